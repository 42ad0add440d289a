"""What Go learners need beyond the generic loops: the league of past selves (league.py), AlphaGo Zero's heads
(heads.py), matches against fixed opponents with SGF records (matches.py), PUCT search (search.py), and the hooks
that plug them into training (hooks.py). The generic code reaches this package only through agents/hooks.py."""

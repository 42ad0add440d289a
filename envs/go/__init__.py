"""Go: batched rules on torch tensors (game), vector env (env), GTP (gtp), SGF (sgf), boards (render), terminal
play (play)."""

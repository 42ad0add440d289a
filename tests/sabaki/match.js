// A handicap game between `rl gtp` (Black) and GNU Go (White) under @sabaki/gtp, driven as the Sabaki GUI drives
// engines: a ControllerStateTracker syncs komi, boardsize, time settings and the game's history
// (set_free_handicap, then play commands) into an engine before it is asked for a genmove.
// Usage: node tests/sabaki/match.js PYTHON GNUGO; prints {handicap, moves, passes, stones, score} as JSON,
// handicap and stones holding each engine's {black, white} stones before the first move and at the end.
const {ControllerStateTracker} = require('@sabaki/gtp')

async function listStones(engine, state) {
  await engine.sync(state)
  const stones = {}
  for (const who of ['black', 'white']) {
    const {content} = await engine.queueCommand({name: 'list_stones', args: [who]})
    stones[who] = content.trim().toUpperCase().split(/\s+/).filter(Boolean).sort()
  }
  return stones
}

async function main() {
  const [python, gnugo] = process.argv.slice(2)
  const engines = {
    B: ControllerStateTracker.fromController(python, ['-m', 'agents.cli', 'gtp', '--seed', '2']),
    W: ControllerStateTracker.fromController(gnugo, ['--mode', 'gtp', '--chinese-rules', '--level', '1', '--seed', '0'])
  }
  for (const engine of Object.values(engines)) engine.controller.start()
  const state = {
    komi: 0.5,
    boardsize: [9, 9],
    timeSettings: {mainTime: 300, byoyomiTime: 10, byoyomiStones: 1},
    history: [{name: 'set_free_handicap', args: ['C3', 'G7']}]
  }
  const handicap = {rl: await listStones(engines.B, state), gnugo: await listStones(engines.W, state)}
  let color = 'W'
  let passes = 0
  while (passes < 2 && state.history.length < 400) {
    const engine = engines[color]
    await engine.sync(state)
    const {content, error} = await engine.queueCommand({name: 'genmove', args: [color]})
    if (error) throw new Error(`genmove ${color}: ${content}`)
    const move = content.trim().toLowerCase() === 'resign' ? 'pass' : content.trim()
    passes = move.toLowerCase() === 'pass' ? passes + 1 : 0
    state.history.push({name: 'play', args: [color, move]})
    color = color === 'B' ? 'W' : 'B'
  }
  const stones = {rl: await listStones(engines.B, state), gnugo: await listStones(engines.W, state)}
  const score = (await engines.B.queueCommand({name: 'final_score'})).content.trim()
  await engines.B.queueCommand({name: 'final_status_list', args: ['dead']})
  for (const engine of Object.values(engines)) await engine.controller.stop()
  console.log(JSON.stringify({handicap, moves: state.history.length - 1, passes, stones, score}))
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})

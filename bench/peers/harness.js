// Shared timing harness of the Node peer benchmarks (libsignal_bench.js, baileys_libsignal_bench.js).
'use strict';

const now = () => Number(process.hrtime.bigint()) / 1e9;

// measure(fn, seconds): fn(n) runs n ops and returns the seconds spent on them (preparation
// excluded). Warm up, calibrate n for `seconds` in total, run 5 equal rounds; return
// [best, median] µs/op and n. The best round is the figure: on a shared machine it is the one
// least disturbed.
async function measure(fn, seconds, rounds = 5) {
  await fn(20); // warm-up
  const per = (await fn(20)) / 20;
  const total = Math.max(5 * rounds, Math.ceil(seconds / per));
  const perRound = Math.max(5, Math.floor(total / rounds));
  const times = [];
  for (let r = 0; r < rounds; r++) {
    if (global.gc) global.gc();
    times.push(((await fn(perRound)) / perRound) * 1e6);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return [sorted[0], sorted[Math.floor(rounds / 2)], perRound * rounds];
}

// A figure table: put(name, measure(...)) records best, median and iterations under `name`.
function figures() {
  const results = {};
  const medians = {};
  const iters = {};
  const put = (name, [best, median, n]) => {
    results[name] = Math.round(best * 10) / 10;
    medians[name] = Math.round(median * 10) / 10;
    iters[name.replace(/_us.*$/, '')] = n;
  };
  return { results, medians, iters, put };
}

module.exports = { now, measure, figures };

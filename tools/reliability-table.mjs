// Prints the reliability report the test suite wrote (NIGHTSHIFT_RELIABILITY_REPORT) as Markdown.
import { readFileSync } from 'node:fs';

const rows = JSON.parse(readFileSync(process.argv[2], 'utf8'));
console.log('| fault | runs | rows lost | rows doubled |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.fault} | ${r.runs} | ${r.lost} | ${r.doubled} |`);
const total = rows.reduce((t, r) => ({ runs: t.runs + r.runs, lost: t.lost + r.lost, doubled: t.doubled + r.doubled }), {
  runs: 0,
  lost: 0,
  doubled: 0,
});
console.log(`| **all ${rows.length} scenarios** | ${total.runs} | ${total.lost} | ${total.doubled} |`);

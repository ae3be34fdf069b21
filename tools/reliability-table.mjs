// Prints the reliability report the test suite wrote (NIGHTSHIFT_RELIABILITY_REPORT) as Markdown:
// the table in docs/reliability.md (scenarios grouped), then every scenario.
import { readFileSync } from 'node:fs';

const rows = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const sum = (list) =>
  list.reduce((t, r) => ({ runs: t.runs + r.runs, lost: t.lost + r.lost, doubled: t.doubled + r.doubled }), {
    runs: 0,
    lost: 0,
    doubled: 0,
  });
const groups = new Map();
for (const r of rows) {
  const name = r.group ?? r.fault;
  groups.set(name, [...(groups.get(name) ?? []), r]);
}
console.log('| fault | scenarios | runs | rows lost | rows doubled |\n|---|---|---|---|---|');
for (const [name, list] of groups) {
  const t = sum(list);
  console.log(`| ${name} | ${list.length} | ${t.runs} | ${t.lost} | ${t.doubled} |`);
}
const total = sum(rows);
console.log(`| **all** | **${rows.length}** | **${total.runs}** | **${total.lost}** | **${total.doubled}** |`);
console.log('\n| scenario | runs | rows lost | rows doubled |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.fault} | ${r.runs} | ${r.lost} | ${r.doubled} |`);

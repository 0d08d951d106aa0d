// Reads a solc standard-JSON input on stdin and prints solc's standard-JSON output on stdout.
// `node solc-compile.js --version` prints the exact compiler version instead.
'use strict';

const solc = require('solc');

if (process.argv.includes('--version')) {
  process.stdout.write(solc.version() + '\n');
  process.exit(0);
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  const output = solc.compile(input);
  process.stdout.write(output);
  process.stdout.write('\n');
});

// Mocha's settings. `npm test` runs every spec; a spec file named on the command line
// (`npx mocha dist/test/cli.spec.js`) runs alone instead of being added to all of them.
const named = process.argv.slice(2).some((arg) => arg.endsWith('.spec.js'));
module.exports = {
  spec: named ? [] : ['dist/test/**/*.spec.js'],
  timeout: 60000,
  reporter: 'spec',
};

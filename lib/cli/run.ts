// Runs the CLI from source (tests and development): `node --import tsx lib/cli/run.ts info`.
import { main } from './main.js';

await main(process.argv.slice(2));

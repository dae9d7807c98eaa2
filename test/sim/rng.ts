/** The simulator's only source of randomness: the project's seeded generator. */
export { Rng } from '../../src/rng.js';

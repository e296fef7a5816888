/**
 * @module api
 * The admin contract (see v1.ts): types, routes and error codes shared by admin/ and cli/.
 */
export * from './v1.js';

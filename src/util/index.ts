/**
 * @module util
 * Mail-agnostic helpers, the public surface of util/: the injectable Clock (time is never read
 * directly elsewhere), durations, sizes, CIDR sets and token buckets. Imports nothing from the
 * rest of src/.
 */
export { sleepOn, systemClock } from './clock.js';
export type { Clock, Sleep, Timer } from './clock.js';
export { cidrContains, compileCidrList, parseCidr, parseCidrList, ipToBytes, isIPv4Mapped } from './cidr.js';
export type { Cidr, CidrResult } from './cidr.js';
export { parseDuration, formatDuration, DURATION_HINT } from './duration.js';
export type { DurationResult } from './duration.js';
export { parseSize, formatSize, SIZE_HINT } from './size.js';
export type { SizeResult } from './size.js';
export { rfc5322Date } from './date.js';
export { isValidSenderAddress, isValidUserName, readUserFile, writeUserFile } from './user-file.js';
export type { UserEntry, UserFileResult } from './user-file.js';
export { BucketTable, take, tokensAt } from './token-bucket.js';
export type { BucketRate, BucketState, BucketTableOptions, TakeResult } from './token-bucket.js';
export { pooledRandomBytes } from './random-pool.js';

/**
 * @module admin/validate
 * The request schemas of the admin API v1, as data, and the one validator that reads them
 * (KumoMTA's `deny_unknown_fields`, by hand: ten fields do not need a schema library). Every
 * transport goes through it: the HTTP server turns a query string into an object with
 * `fromQuery` (numbers and booleans parsed by the schema), and the API implementation checks the
 * object with `check`, so an in-process caller (the offline CLI) gets the same errors as HTTP.
 *
 * Errors are ApiErrorV1 naming the field as the caller wrote it (`filter.olderThanMs`):
 * UNKNOWN_FIELD for a field the schema does not know (never ignored), BAD_REQUEST for a wrong
 * type, a value out of range, a missing required field, or a repeated query parameter.
 * Pure; no I/O.
 */
import { ApiErrorV1 } from '../api/index.js';

export type FieldType =
  | { readonly kind: 'string'; readonly maxLength?: number }
  | { readonly kind: 'integer'; readonly min: number; readonly max: number }
  | { readonly kind: 'boolean' }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  | { readonly kind: 'string-list'; readonly maxItems: number }
  | { readonly kind: 'object'; readonly schema: Schema };

export interface FieldSpec {
  readonly type: FieldType;
  readonly required?: boolean;
}

export type Schema = Readonly<Record<string, FieldSpec>>;

const STATES = ['queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted'] as const;
const TEXT = { kind: 'string', maxLength: 1000 } as const;

export const FILTER_SCHEMA: Schema = {
  state: { type: { kind: 'enum', values: STATES } },
  domain: { type: TEXT },
  sender: { type: TEXT },
  recipient: { type: TEXT },
  olderThanMs: { type: { kind: 'integer', min: 0, max: 100 * 365 * 86_400_000 } },
  reply: { type: TEXT },
};

export const LIST_SCHEMA: Schema = {
  ...FILTER_SCHEMA,
  sort: { type: { kind: 'enum', values: ['received', 'next-attempt', 'size'] } },
  limit: { type: { kind: 'integer', min: 1, max: 1000 } },
  cursor: { type: TEXT },
};

/** Most ids one action request may name. */
export const MAX_IDS = 10_000;

export const ACTION_SCHEMA: Schema = {
  action: { type: { kind: 'enum', values: ['retry', 'hold', 'release', 'delete', 'bounce'] }, required: true },
  ids: { type: { kind: 'string-list', maxItems: MAX_IDS } },
  filter: { type: { kind: 'object', schema: FILTER_SCHEMA } },
  reason: { type: TEXT },
  dryRun: { type: { kind: 'boolean' } },
  confirm: { type: { kind: 'boolean' } },
};

export const EXPLAIN_SCHEMA: Schema = {
  target: { type: { kind: 'string', maxLength: 1000 }, required: true },
};

/** An empty schema: for routes that take no fields (overview, timeseries). */
export const NO_FIELDS: Schema = {};

/** Checks `value` against `schema`; returns it typed, or throws ApiErrorV1 naming the field. */
export function check<T>(value: unknown, schema: Schema, prefix = ''): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const field = prefix.replace(/\.$/, '');
    throw new ApiErrorV1('BAD_REQUEST', field === '' ? 'the request must be a JSON object' : `${field} must be an object`, field === '' ? undefined : field);
  }
  const record = value as Record<string, unknown>;
  for (const name of Object.keys(record)) {
    if (!Object.hasOwn(schema, name)) {
      const known = Object.keys(schema);
      throw new ApiErrorV1('UNKNOWN_FIELD', `unknown field ${JSON.stringify(prefix + name)}${known.length > 0 ? ` (known: ${known.join(', ')})` : ' (this request takes no fields)'}`, prefix + name);
    }
  }
  for (const [name, spec] of Object.entries(schema)) {
    const field = prefix + name;
    const v = record[name];
    if (v === undefined) {
      if (spec.required) throw new ApiErrorV1('BAD_REQUEST', `${field} is required`, field);
      continue;
    }
    checkField(v, spec.type, field);
  }
  return value as T;
}

function checkField(v: unknown, type: FieldType, field: string): void {
  const bad = (what: string): never => {
    throw new ApiErrorV1('BAD_REQUEST', `${field} must be ${what}`, field);
  };
  switch (type.kind) {
    case 'string':
      if (typeof v !== 'string') bad('a string');
      if (type.maxLength !== undefined && (v as string).length > type.maxLength) bad(`at most ${type.maxLength} characters`);
      return;
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) bad('an integer');
      if ((v as number) < type.min || (v as number) > type.max) bad(`between ${type.min} and ${type.max}`);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') bad('true or false');
      return;
    case 'enum':
      if (typeof v !== 'string' || !type.values.includes(v)) bad(`one of ${type.values.join(', ')}`);
      return;
    case 'string-list':
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) bad('a list of strings');
      if ((v as unknown[]).length > type.maxItems) bad(`a list of at most ${type.maxItems}`);
      return;
    case 'object':
      check(v, type.schema, `${field}.`);
      return;
  }
}

/**
 * A query string as a request object: each parameter is a field of `schema`, its text parsed by
 * the field's type (integers in decimal, booleans as true/false). A parameter given twice, or one
 * the schema does not know, is an error; nested objects cannot come from a query string.
 */
export function fromQuery(params: URLSearchParams, schema: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, text] of params) {
    const spec = Object.hasOwn(schema, name) ? schema[name] : undefined;
    if (spec === undefined) {
      const known = Object.keys(schema);
      throw new ApiErrorV1('UNKNOWN_FIELD', `unknown query parameter ${JSON.stringify(name)}${known.length > 0 ? ` (known: ${known.join(', ')})` : ' (this route takes none)'}`, name);
    }
    if (Object.hasOwn(out, name)) throw new ApiErrorV1('BAD_REQUEST', `query parameter ${name} is given more than once`, name);
    out[name] = parseText(text, spec.type, name);
  }
  return out;
}

function parseText(text: string, type: FieldType, field: string): unknown {
  switch (type.kind) {
    case 'integer':
      if (!/^-?\d+$/.test(text)) throw new ApiErrorV1('BAD_REQUEST', `${field} must be an integer`, field);
      return Number(text);
    case 'boolean':
      if (text !== 'true' && text !== 'false') throw new ApiErrorV1('BAD_REQUEST', `${field} must be true or false`, field);
      return text === 'true';
    case 'string-list':
      return text.split(',');
    case 'object':
      throw new ApiErrorV1('BAD_REQUEST', `${field} cannot be given in a query string`, field);
    default:
      return text;
  }
}

// Building blocks for the families' config.json schemas (zod), and the one place that turns schema
// issues into a FamilyConfigError naming the first offending field and quoting every bad value.

import { z } from 'zod';
import { FamilyConfigError } from './errors.js';

const POSITIVE_INT = 'expected an integer >= 1';
export const positiveInt = z.int({ error: POSITIVE_INT }).positive({ error: POSITIVE_INT });
export const positiveNumber = z
  .number({ error: 'expected a number > 0' })
  .positive({ error: 'expected a number > 0' });
export const tokenId = z.int({ error: 'expected a token id (integer >= 0)' }).nonnegative({
  error: 'expected a token id (integer >= 0)',
});
export const tokenIds = z.union(
  [tokenId, z.array(tokenId).min(1, { error: 'expected at least one token id' })],
  {
    error: 'expected a token id or a non-empty list of token ids',
  },
);
export const torchDtype = z.enum(['bfloat16', 'float16', 'float32'], {
  error: 'expected one of bfloat16, float16, float32',
});

/** Parses `obj` with `schema`; all issues become one FamilyConfigError, blamed on the first field. */
export function parseWithSchema<S extends z.ZodType>(
  schema: S,
  obj: Readonly<Record<string, unknown>>,
): z.output<S> {
  const result = schema.safeParse(obj);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    const value = valueAt(obj, issue.path);
    if (value === undefined && issue.path.length === 1) return `missing required field "${field}"`;
    return `field "${field}": ${issue.message}, got ${describeValue(value)}`;
  });
  const first = result.error.issues[0]?.path[0];
  throw new FamilyConfigError(problems.join('; '), first === undefined ? undefined : String(first));
}

/** A value as error messages quote it (`nothing` for undefined, JSON cut to 80 characters). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function valueAt(obj: unknown, keys: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const key of keys) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

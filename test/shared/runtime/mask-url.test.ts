// maskUrl: no secret of a Redis (or any) URL survives into a log line; what tells endpoints apart
// (scheme, user, host, port, database, other parameters) does.

import { describe, expect, it } from 'vitest';
import { maskUrl } from '../../../shared/runtime/mask-url.js';

describe('maskUrl', () => {
  it.each([
    ['redis://default:s3cret@redis.internal:6379/0', 'redis://default:***@redis.internal:6379/0'],
    ['rediss://:s3cret@redis.example.com:6380', 'rediss://:***@redis.example.com:6380'],
    ['redis://s3cret@localhost', 'redis://***@localhost'],
    ['rediss://u:p%40ss%3Aword@h:1/2?tls=true', 'rediss://u:***@h:1/2?tls=true'],
    ['redis://h:6379/0?password=s3cret&db=1', 'redis://h:6379/0?password=***&db=1'],
    ['http://h/x?Token=abc&api_key=def&q=1', 'http://h/x?Token=***&api_key=***&q=1'],
  ])('%s -> %s', (url, masked) => {
    expect(maskUrl(url)).toBe(masked);
  });

  it('leaves URLs without credentials as they are', () => {
    expect(maskUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(maskUrl('ws://10.0.0.2:7070')).toBe('ws://10.0.0.2:7070');
    // A user name alone is not a secret outside Redis URLs.
    expect(maskUrl('https://alice@example.com/')).toBe('https://alice@example.com/');
  });

  it('masks the credentials of text that does not parse as a URL', () => {
    const masked = maskUrl('redis://user:s3cret@bad host:99999');
    expect(masked).toBe('redis://user:***@bad host:99999');
    expect(maskUrl('rediss://s3cret@[::1')).toBe('rediss://***@[::1');
    expect(maskUrl('not a url')).toBe('not a url');
  });

  it('never returns the password, whatever its characters', () => {
    for (const secret of ['p@ss', 'a:b', 'x/y', 'ünï', '%41%42']) {
      const url = `rediss://user:${encodeURIComponent(secret)}@h:6380`;
      const masked = maskUrl(url);
      expect(masked).not.toContain(encodeURIComponent(secret));
      expect(masked).toBe('rediss://user:***@h:6380');
    }
  });
});

// fetch on a new connection every time (node:http, no agent): for tests of a server that closes
// idle keep-alive connections (a drain does), where a pooled socket the client happens to reuse at
// that moment would fail in the client, not in the server under test.

import http from 'node:http';

export const freshFetch: typeof fetch = (input, init) =>
  new Promise<Response>((resolve, reject) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const req = http.request(url, { method: init?.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const responseHeaders = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v !== undefined) responseHeaders.set(k, Array.isArray(v) ? v.join(', ') : v);
        }
        resolve(
          new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: responseHeaders }),
        );
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (typeof init?.body === 'string') req.write(init.body);
    req.end();
  });

// One greedy completion of 8 tokens from a running `kmoe serve` (the demo model): the text, or an
// error with the HTTP status and body. Greedy text is what failover tests compare against a baseline.

export async function greedyCompletion(serverUrl: string, signal?: AbortSignal): Promise<string> {
  const res = await fetch(`${serverUrl}/v1/completions`, {
    ...(signal === undefined ? {} : { signal }),
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-mixtral', prompt: 'def fib(n):', max_tokens: 8, temperature: 0 }),
  });
  const body = (await res.json()) as { choices?: { text: string }[] };
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}`);
  return body.choices![0]!.text;
}

// Reads Prometheus text exposition the way a test needs it: one series' value by its exact name
// and labels, failing loudly when the series is absent.

export type Scrape = (series: string) => number;

/** The series of one /metrics response; a missing series throws, naming it. */
export function parseScrape(text: string): Scrape {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return (series) => {
    const v = values.get(series);
    if (v === undefined) throw new Error(`no series ${series} in /metrics`);
    return v;
  };
}

export async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parseScrape(await res.text());
}

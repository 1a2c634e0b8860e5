// The files a command writes beside the one an output flag names (bench project's markdown table
// beside its JSON, eval --sweep's JSON beside its chart): derived here, in one place, so the
// command line's check of its outputs (program.ts) sees them as the command will write them.

/** `x.json` -> `x.md`; any other name gets `.md` appended. */
export function markdownBeside(json: string): string {
  return `${json.replace(/\.json$/, '')}.md`;
}

/** `x.svg` -> `x.json`; any other name gets `.json` appended. */
export function jsonBeside(svg: string): string {
  return `${svg.replace(/\.svg$/, '')}.json`;
}

// How calibration reports a relative perplexity change: signed percent, two decimals (+0.57%, -0.03%).

export function signedPercent(x: number): string {
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`;
}

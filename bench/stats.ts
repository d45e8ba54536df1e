export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function mean(values: readonly number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / values.length;
}

/** A whole number with thousands separators. */
export function count(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function ms(value: number): string {
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

/** A latency from autocannon, which counts whole milliseconds: 0 means under one. */
export function latencyMs(value: number): string {
  return value === 0 ? '< 1 ms' : ms(value);
}

/** One latency against another, or `–` where either is under autocannon's millisecond. */
export function latencyRatio(value: number, against: number): string {
  return value === 0 || against === 0 ? '–' : `${ratio(value / against)}×`;
}

export function ratio(value: number): string {
  return value.toFixed(2);
}

export const sleep = (milliseconds: number) => new Promise<void>((resolve) => setTimeout(resolve, milliseconds));

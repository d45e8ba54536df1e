/**
 * Runs `work` on every item, at most `limit` at a time, and returns the results in the items' order.
 * `settled` hears of each item done. After a failure nothing new is begun; once the work already
 * under way has settled, the failure of the first item (in the items' order) that failed is thrown.
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
  settled?: () => void,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  const failures: { index: number; error: unknown }[] = [];
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length && failures.length === 0) {
      const index = next++;
      try {
        results[index] = await work(items[index], index);
        settled?.();
      } catch (error) {
        failures.push({ index, error });
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failures.length > 0) throw failures.reduce((first, f) => (f.index < first.index ? f : first)).error;
  return results;
}

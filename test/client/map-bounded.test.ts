import { mapBounded } from '../../src/client/map-bounded';

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

describe('mapBounded', () => {
  test('runs at most `limit` at once and answers in the items’ order, whatever order they finish in', async () => {
    let running = 0;
    let most = 0;
    const settled: number[] = [];
    const results = await mapBounded(
      [5, 1, 4, 2, 3, 1, 2],
      3,
      async (ms, i) => {
        running++;
        most = Math.max(most, running);
        for (let t = 0; t < ms; t++) await tick();
        running--;
        return `${i}:${ms}`;
      },
      () => settled.push(running),
    );
    expect(results).toEqual(['0:5', '1:1', '2:4', '3:2', '4:3', '5:1', '6:2']);
    expect(most).toBe(3);
    expect(settled).toHaveLength(7);
  });

  test('after a failure begins nothing new, lets what runs finish, and throws the failure of the earliest item', async () => {
    const begun: number[] = [];
    const finished: number[] = [];
    const work = async (item: number) => {
      begun.push(item);
      for (let t = 0; t < (item === 1 ? 5 : 1); t++) await tick();
      if (item === 1 || item === 2) throw new Error(`item ${item} failed`);
      finished.push(item);
    };
    await expect(mapBounded([0, 1, 2, 3, 4, 5, 6], 3, work)).rejects.toThrow('item 1 failed');
    // 0, 1 and 2 began; 2 failed first, so 3 began only in the slot 0 freed before, and nothing after.
    expect(begun).toEqual([0, 1, 2, 3]);
    expect(finished).toEqual([0, 3]);
  });
});

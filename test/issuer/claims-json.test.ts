import { writeSimpleClaimsJson } from '../../src/issuer/claims-json';

/** What the writer gives for `claims`: the JSON it wrote, or null where it leaves them to JSON.stringify. */
function written(claims: object, room = 4096): string | null {
  const target = Buffer.alloc(room);
  const length = writeSimpleClaimsJson(claims, target);
  return length < 0 ? null : target.toString('utf8', 0, length);
}

class Session {
  sub = 'user-1';
  get shadowed(): string {
    return 'not own, not written';
  }
}

describe('writeSimpleClaimsJson', () => {
  test.each<[string, object]>([
    ['typical claims', { iss: 'https://issuer.example', sub: 'user-1234', aud: 'api', scope: 'read write' }],
    ['no claims', {}],
    ['numbers as JSON writes them', { a: 0, b: -0, c: -17, d: 0.1, e: 1e21, f: 5e-7, g: Number.MAX_SAFE_INTEGER }],
    ['booleans and null', { admin: false, verified: true, org: null }],
    ['arrays of plain values', { aud: ['api', 'admin'], none: [], mixed: [1, 'a', true, null] }],
    ['integer-like names first, as JSON orders them', { b: 1, 2: 'two', a: 2, 1: 'one' }],
    ['the printable ASCII range', { text: ' !#$%&()*+-./09:;<=>?@AZ[]^_`az{|}~' }],
    ['an instance: its own members only', new Session()],
  ])('%s: exactly what JSON.stringify writes', (_, claims) => {
    expect(written(claims)).toBe(JSON.stringify(claims));
  });

  test('members JSON leaves out are left out: symbol-named, non-enumerable, inherited', () => {
    const claims = Object.create({ inherited: 'x' }, { hidden: { value: 'y', enumerable: false } }) as object;
    Object.assign(claims, { sub: 'user-1', [Symbol('s')]: 'z' });
    expect(written(claims)).toBe('{"sub":"user-1"}');
  });

  test.each<[string, object]>([
    ['a nested object', { sub: 'u', org: { id: 1 } }],
    ['a nested array', { m: [[1]] }],
    ['a quote', { name: 'a"b' }],
    ['a backslash', { path: 'a\\b' }],
    ['a control character', { text: 'a\nb' }],
    ['DEL', { text: 'a\u007fb' }],
    ['a non-ASCII character', { name: 'José' }],
    ['a lone surrogate', { text: '\ud800' }],
    ['a name to escape', { 'a"b': 1 }],
    ['a non-ASCII name', { é: 1 }],
    ['undefined', { sub: 'u', gone: undefined }],
    ['a function', { f: () => 1 }],
    ['a symbol', { s: Symbol('s') }],
    ['NaN', { n: Number.NaN }],
    ['Infinity', { n: Number.POSITIVE_INFINITY }],
    ['a BigInt', { n: 1n }],
    ['a boxed string', { s: Object('x') as object }],
    ['a hole in an array', { a: new Array<number>(2) }],
    ['an undefined element', { a: [undefined] }],
    ['a toJSON of the claims', { sub: 'u', toJSON: () => ({}) }],
    ['a toJSON of an array', { a: Object.assign(['x'], { toJSON: () => 'y' }) }],
    ['a Date', { at: new Date(0) }],
  ])('%s: left to JSON.stringify', (_, claims) => {
    expect(written(claims)).toBeNull();
  });

  test('claims that do not fit, with room to spare for what follows, are left to JSON.stringify', () => {
    const claims = { sub: 'x'.repeat(100) };
    const json = JSON.stringify(claims);
    expect(written(claims, json.length)).toBeNull();
    expect(written(claims, json.length + 10)).toBe(json);
    expect(written({}, 4)).toBeNull();
  });

  test('1000 random claims: each written exactly as JSON.stringify writes it, or left to it', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = <T>(values: T[]): T => values[Math.floor(random() * values.length)];
    const text = () =>
      Array.from({ length: Math.floor(random() * 12) }, () =>
        pick(['a', 'Z', '0', ' ', '~', '-', '"', '\\', '\n', 'é', '\u{1F600}', '\u0000']),
      ).join('');
    const value = (depth: number): unknown =>
      pick<() => unknown>([
        text,
        text,
        () => Math.floor(random() * 1e6) - 5e5,
        () => random() * 10 ** Math.floor(random() * 40 - 20),
        () => random() < 0.5,
        () => null,
        () => pick([undefined, Number.NaN, () => 0]),
        () => (depth > 1 ? 'leaf' : Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1))),
        () => (depth > 1 ? 'leaf' : { nested: value(depth + 1) }),
      ])();
    let direct = 0;
    for (let i = 0; i < 1000; i += 1) {
      const claims = Object.fromEntries(Array.from({ length: Math.floor(random() * 6) }, () => [text(), value(0)]));
      const result = written(claims);
      if (result !== null) {
        direct += 1;
        expect(result).toBe(JSON.stringify(claims));
      }
    }
    // Both ways were taken (the seed is fixed, so these counts are too).
    expect(direct).toBeGreaterThan(50);
    expect(direct).toBeLessThan(950);
  });
});

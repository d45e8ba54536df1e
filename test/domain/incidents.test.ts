import { applyAlert, propagationIncident, propagationIncidentKid, type Incident } from '../../src/domain/incidents';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 1);
const REMINDER = 4 * HOUR;
const firing = { incident: 'step-failure', status: 'firing' } as const;
const resolved = { incident: 'step-failure', status: 'resolved' } as const;

test('a first firing opens the incident and announces it', () => {
  expect(applyAlert(null, firing, T0, REMINDER)).toEqual({
    incident: { key: 'step-failure', openedAt: T0, notifiedAt: T0, notifications: 1 },
    notify: 'opened',
  });
});

test('repeats inside the reminder interval are suppressed; the first one past it is a reminder', () => {
  const open: Incident = { key: 'step-failure', openedAt: T0, notifiedAt: T0, notifications: 1 };
  expect(applyAlert(open, firing, T0 + HOUR, REMINDER)).toEqual({ incident: open, notify: null });
  expect(applyAlert(open, firing, T0 + REMINDER - 1, REMINDER).notify).toBeNull();
  const reminded = applyAlert(open, firing, T0 + REMINDER + HOUR, REMINDER);
  expect(reminded).toEqual({
    incident: { key: 'step-failure', openedAt: T0, notifiedAt: T0 + REMINDER + HOUR, notifications: 2 },
    notify: 'reminder',
  });
  // The next reminder counts from the last message, not from the opening.
  expect(applyAlert(reminded.incident, firing, T0 + 2 * REMINDER, REMINDER).notify).toBeNull();
});

test('a resolution closes an open incident and announces it; with nothing open it is no news', () => {
  const open: Incident = { key: 'step-failure', openedAt: T0, notifiedAt: T0, notifications: 1 };
  expect(applyAlert(open, resolved, T0 + HOUR, REMINDER)).toEqual({ incident: null, notify: 'resolved' });
  expect(applyAlert(null, resolved, T0 + HOUR, REMINDER)).toEqual({ incident: null, notify: null });
});

test('the same firing at the instant of the last message (a retried decision) is announced again, unchanged', () => {
  const opened = applyAlert(null, firing, T0, REMINDER).incident!;
  expect(applyAlert(opened, firing, T0, REMINDER)).toEqual({ incident: opened, notify: 'opened' });
  const reminded = applyAlert(opened, firing, T0 + REMINDER, REMINDER).incident!;
  expect(applyAlert(reminded, firing, T0 + REMINDER, REMINDER)).toEqual({ incident: reminded, notify: 'reminder' });
});

test('a propagation incident names its kid, and only it gives one back', () => {
  expect(propagationIncidentKid(propagationIncident('abc-_1'))).toBe('abc-_1');
  expect(propagationIncidentKid('step-failure')).toBeUndefined();
  expect(propagationIncidentKid('invariant:OVERDUE:abc')).toBeUndefined();
});

/**
 * `new Date(ms).toISOString()` without a Date: V8 breaks a Date into fields through ICU's time
 * zone code, which maps ~0.6 MB of ICU data into the process (the idle server's status files are
 * written every 5 s). Days to a civil date as in Howard Hinnant's `civil_from_days`.
 */
export function isoTime(ms: number = Date.now()): string {
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw new RangeError(`isoTime: ${ms} is not a time`);
  const t = Math.trunc(ms); // as TimeClip
  const days = Math.floor(t / 86_400_000);
  const inDay = t - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const y = year >= 0 && year <= 9999 ? String(year).padStart(4, '0') : (year < 0 ? '-' : '+') + String(Math.abs(year)).padStart(6, '0');
  const two = (n: number): string => String(n).padStart(2, '0');
  const ms3 = String(inDay % 1000).padStart(3, '0');
  return `${y}-${two(month)}-${two(day)}T${two(Math.floor(inDay / 3_600_000))}:${two(Math.floor(inDay / 60_000) % 60)}:${two(Math.floor(inDay / 1000) % 60)}.${ms3}Z`;
}

/**
 * PAX extended-header records ("<len> <key>=<value>\n"), built from raw bytes: xattr values such as
 * security.capability are binary, which tar-stream's own string-based PAX encoder would mangle.
 */

function record(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  // The length prefix counts its own digits: grow it until it is consistent.
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export function encodePaxRecords(records: Array<[string, Buffer | string]>): Buffer {
  return Buffer.concat(records.map(([k, v]) => record(k, typeof v === 'string' ? Buffer.from(v) : v)));
}

/** A PAX time value: seconds with a nanosecond fraction, "1700000000.123456789". */
export function paxTime(sec: number, nsec: number): string {
  return nsec ? `${sec}.${String(nsec).padStart(9, '0')}` : String(sec);
}

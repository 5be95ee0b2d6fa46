// IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT", for
// the Date header.
//
// Contract: formatImfDate(sec, dst) writes exactly DATE_LEN bytes at dst and
// allocates nothing. Seconds are clamped to 0..9999-12-31T23:59:59 so the
// format's four-digit year can always hold the result (a broken clock must
// not make the module write outside its buffers).

/** Bytes in an IMF-fixdate. */
export const DATE_LEN: i32 = 29;

const MAX_SEC: i64 = 253402300799; // 9999-12-31T23:59:59Z

// Three letters per entry, indexed by weekday (0 = Sunday) and month (0 = January).
const DAY_NAMES = "SunMonTueWedThuFriSat";
const MONTH_NAMES = "JanFebMarAprMayJunJulAugSepOctNovDec";

// @ts-ignore: decorator
@inline function put3(dst: usize, names: string, index: i32): void {
  const i = index * 3;
  store<u8>(dst, <u8>names.charCodeAt(i));
  store<u8>(dst, <u8>names.charCodeAt(i + 1), 1);
  store<u8>(dst, <u8>names.charCodeAt(i + 2), 2);
}

// @ts-ignore: decorator
@inline function put2(dst: usize, v: i32): void {
  store<u8>(dst, <u8>(0x30 + v / 10));
  store<u8>(dst, <u8>(0x30 + v % 10), 1);
}

/** Writes the IMF-fixdate of `sec` seconds since the Unix epoch at `dst`. */
export function formatImfDate(sec: i64, dst: usize): void {
  if (sec < 0) sec = 0;
  if (sec > MAX_SEC) sec = MAX_SEC;
  const days = <i32>(sec / 86400);
  const secOfDay = <i32>(sec % 86400);
  // 1970-01-01 was a Thursday (weekday 4).
  const weekday = (days + 4) % 7;

  // Civil date from a day count: shift the epoch to 0000-03-01 so that leap
  // days fall at the end of a (March-based) year, then split into 400-year
  // eras of 146097 days. `days` is never negative here, so plain integer
  // division is floor division.
  const z = days + 719468;
  const era = z / 146097;
  const doe = z - era * 146097;                                   // day of era, 0..146096
  const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; // year of era, 0..399
  const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);           // day of March-based year
  const mp = (5 * doy + 2) / 153;                                 // March = 0
  const day = doy - (153 * mp + 2) / 5 + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;                        // 1..12
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  put3(dst, DAY_NAMES, weekday);
  store<u8>(dst, 0x2C, 3);  // ','
  store<u8>(dst, 0x20, 4);
  put2(dst + 5, day);
  store<u8>(dst, 0x20, 7);
  put3(dst + 8, MONTH_NAMES, month - 1);
  store<u8>(dst, 0x20, 11);
  put2(dst + 12, year / 100);
  put2(dst + 14, year % 100);
  store<u8>(dst, 0x20, 16);
  put2(dst + 17, secOfDay / 3600);
  store<u8>(dst, 0x3A, 19); // ':'
  put2(dst + 20, (secOfDay / 60) % 60);
  store<u8>(dst, 0x3A, 22);
  put2(dst + 23, secOfDay % 60);
  store<u8>(dst, 0x20, 25);
  store<u8>(dst, 0x47, 26); // "GMT"
  store<u8>(dst, 0x4D, 27);
  store<u8>(dst, 0x54, 28);
}

import { Cron } from "croner";
import { FieldError } from "../../lib/core/errors";
import {
	fireTimesBetween,
	loadTimeZone,
	MAX_INSTANT_MS,
	MIN_INSTANT_MS,
	nextFireTime,
	nextFireTimes,
	parseInstant,
	parseSchedule,
	parseStoredSchedule,
	SCHEDULE_ALIASES,
	validateTimezone,
} from "../../lib/core/schedule";

const ms = (iso: string) => Date.parse(iso);
const isoList = (a: number[]) => a.map((t) => new Date(t).toISOString().replace(".000Z", "Z"));
const next = (expr: string, tz: string, after: string, n: number) => isoList(nextFireTimes(expr, tz, ms(after), n));

const NY = "America/New_York";
const LON = "Europe/London";

describe("parseSchedule: accepted forms", () => {
	test.each<[string, string, boolean, boolean]>([
		// expr, normalized 6-field pattern, hasSeconds, fixedTime
		["* * * * *", "0 * * * * *", false, false],
		["30 2 * * *", "0 30 2 * * *", false, true],
		["  30\t2  * * *  ", "0 30 2 * * *", false, true],
		["0 9-17 * * 1-5", "0 0 9-17 * * 1-5", false, true],
		["0,30 1,2 * * *", "0 0,30 1,2 * * *", false, true],
		["*/15 * * * *", "0 */15 * * * *", false, false],
		["0 * * * *", "0 0 * * * *", false, false],
		["* 2 * * *", "0 * 2 * * *", false, false],
		["30 */2 * * *", "0 30 */2 * * *", false, false],
		["1,2-5,10-20/3 * * * *", "0 1,2-5,10-20/3 * * * *", false, false],
		["*/10 30 2 * * *", "*/10 30 2 * * *", true, true],
		["0 0 1 jan,Jul,DEC *", "0 0 0 1 1,7,12 *", false, true],
		["0 0 * FEB-apr *", "0 0 0 * 2-4 *", false, true],
		["0 0 * * mon-FRI", "0 0 0 * * 1-5", false, true],
		["0 0 * * FRI-SUN", "0 0 0 * * 5-7", false, true],
		["0 0 * * sun", "0 0 0 * * 0", false, true],
		["0 0 * * 7", "0 0 0 * * 7", false, true],
		["05 04 * * *", "0 5 4 * * *", false, true],
		["*/60 */24 */31 */12 */7", "0 */60 */24 */31 */12 */7", false, false],
		["0 0 29 2 *", "0 0 0 29 2 *", false, true],
		["@yearly", "0 0 0 1 1 *", false, true],
		["@HOURLY", "0 0 * * * *", false, false],
	])("%j", (expr, pattern, hasSeconds, fixedTime) => {
		const ps = parseSchedule(expr);
		expect(ps.source).toBe(expr.trim());
		expect(ps.pattern).toBe(pattern);
		expect(ps.hasSeconds).toBe(hasSeconds);
		expect(ps.fixedTime).toBe(fixedTime);
	});

	test("croner 9 defaults legacyMode to true (OR of day-of-month and day-of-week)", () => {
		const c = new Cron("0 0 13 * FRI", { utcOffset: 0, paused: true });
		expect(c.options.legacyMode).toBe(true);
		expect(isoList(c.nextRuns(3, new Date(ms("2025-06-01T00:00:00Z"))).map((d) => d.getTime()))).toEqual([
			"2025-06-06T00:00:00Z",
			"2025-06-13T00:00:00Z",
			"2025-06-20T00:00:00Z",
		]);
	});
});

describe("parseSchedule: refused forms", () => {
	test.each<[string, string, RegExp]>([
		["empty", "", /empty/],
		["blank", "   ", /empty/],
		["garbage", "garbage", /5 fields.*got 1/],
		["two fields", "5 4", /got 2/],
		["four fields", "* * * *", /got 4/],
		["seven fields", "0 0 0 * * * 2025", /got 7/],
		["minute 60", "60 * * * *", /minute value 60 is out of range 0-59/],
		["minute 61", "61 * * * *", /minute value 61 is out of range 0-59/],
		["second 60", "60 * * * * *", /second value 60 is out of range/],
		["hour 24", "0 24 * * *", /hour value 24 is out of range 0-23/],
		["hour 25", "0 25 * * *", /hour value 25 is out of range 0-23/],
		["day-of-month 0", "0 0 0 * *", /day-of-month value 0 is out of range 1-31/],
		["day-of-month 32", "0 0 32 * *", /day-of-month value 32 is out of range 1-31/],
		["month 0", "0 0 * 0 *", /month value 0 is out of range 1-12/],
		["month 13", "0 0 * 13 *", /month value 13 is out of range 1-12/],
		["day-of-week 8", "0 0 * * 8", /day-of-week value 8 is out of range 0-7/],
		["range end out of range", "0 0 * * 1-8", /day-of-week value 8/],
		["step 0", "*/0 * * * *", /step must be at least 1/],
		["range step 0", "0-30/0 * * * *", /step must be at least 1/],
		["step too large", "*/61 * * * *", /step 61 is larger than 60/],
		["hour step too large", "0 */25 * * *", /step 25 is larger than 24/],
		["empty step", "*/ * * * *", /step "" is not a positive integer/],
		["double step", "*/5/2 * * * *", /more than one step/],
		["step after single value", "5/15 * * * *", /a step must follow \* or a range/],
		["reversed range", "5-1 * * * *", /range "5-1" is reversed/],
		["reversed day range", "0 0 * * 7-0", /reversed/],
		["reversed named range", "0 0 * * FRI-MON", /reversed/],
		["negative", "-1 * * * *", /minute has an empty value/],
		["open range", "1- * * * *", /minute has an empty value/],
		["empty list item", "1,,2 * * * *", /empty list item/],
		["trailing comma", "1, * * * *", /empty list item/],
		["star in list", "*,5 * * * *", /cannot be combined/],
		["letters in minute", "a * * * *", /minute does not accept names/],
		["name in hour", "0 MON * * *", /hour does not accept names/],
		["unknown month name", "0 0 * JANUARY *", /unknown month name "JANUARY"/],
		["unknown day name", "0 0 * * FUNDAY", /unknown day-of-week name/],
		["decimal", "1.5 * * * *", /not a number/],
		["plus sign", "+5 * * * *", /not a number/],
		["L in day-of-month", "0 0 L * *", /not supported/],
		["L in minute", "L * * * *", /not supported/],
		["W", "0 0 15W * *", /not supported/],
		["hash", "0 0 * * 5#2", /not supported/],
		["hash with name", "0 0 * * FRI#2", /not supported/],
		["last weekday 5L", "0 0 * * 5L", /not supported/],
		["question mark", "0 0 ? * *", /"\?" is not supported/],
		["@reboot", "@reboot", /@reboot is not supported/],
		["unknown alias", "@often", /unknown alias/],
		["alias with extra fields", "@daily 5", /unknown alias/],
		["never fires: Feb 30", "0 0 30 2 *", /never fires/],
		["never fires: Apr 31", "0 0 31 4 *", /never fires/],
		["too long", "0 ".repeat(600), /longer than 1000/],
		["colon (would be a date for croner)", "2025-01-01T00:00:00", /got 1/],
		["newline between fields", "*\n* * * *", /one line of printable ASCII.*U\+000A/],
		["trailing newline", "* * * * *\n", /U\+000A/],
		["leading carriage return", "\r* * * * *", /U\+000D/],
		["vertical tab", "*\u000b* * * *", /U\+000B/],
		["NUL", "* * * * *\u0000", /U\+0000/],
		["DEL", "* * * * \u007f*", /U\+007F/],
		["no-break space", "*\u00a0* * * *", /U\+00A0/],
		["line separator", "*\u2028* * * *", /U\+2028/],
		["next line (C1)", "* * * * *\u0085", /U\+0085/],
		["non-ASCII digit", "\u0661 * * * *", /U\+0661/],
	])("%s: %j", (_name, expr, message) => {
		let err: unknown;
		try {
			parseSchedule(expr);
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(FieldError);
		expect((err as FieldError).field).toBe("schedule");
		expect((err as FieldError).message).toMatch(message);
	});

	test.each([[null], [undefined], [42], [{}], [["* * * * *"]]])("non-string %j", (v) => {
		expect(() => parseSchedule(v as unknown as string)).toThrow(FieldError);
	});
});

describe("parseStoredSchedule: schedules stored before control characters were refused", () => {
	test.each([
		["*\n* * * *", "0 * * * * *"],
		["0 0 29 2 *\n", "0 0 0 29 2 *"],
		["\r\n30\t2 * * *", "0 30 2 * * *"],
		["0\u00a00 29 2 *", "0 0 0 29 2 *"],
	])("%j reads as it did (%s)", (stored, pattern) => {
		expect(parseStoredSchedule(stored).pattern).toBe(pattern);
	});

	test("what was refused then is refused still", () => {
		expect(() => parseStoredSchedule("* * * * *\u0000")).toThrow(FieldError);
		expect(() => parseStoredSchedule("5 4")).toThrow(FieldError);
	});
});

describe("parseInstant: ISO 8601 within the supported years", () => {
	test.each([
		["1970-01-01T00:00:00Z", MIN_INSTANT_MS],
		["2999-12-31T23:59:59Z", MAX_INSTANT_MS],
		["2025-03-08T12:00:00Z", Date.parse("2025-03-08T12:00:00Z")],
	])("%s", (text, ms) => {
		expect(parseInstant("from", text)).toBe(ms);
	});

	test.each(["-271821-04-20T00:00:00Z", "+275760-09-13T00:00:00Z", "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "yesterday", "", "1e20"])(
		"%j is a FieldError naming the field",
		(text) => {
			let err: unknown;
			try {
				parseInstant("from", text);
			} catch (e) {
				err = e;
			}
			expect(err).toBeInstanceOf(FieldError);
			expect((err as FieldError).field).toBe("from");
		},
	);
});

describe("nextFireTimes: UTC fields, names, aliases", () => {
	test.each<[string, string, string, number, string[]]>([
		// expr, timezone, after, count, expected
		["*/15 * * * *", "UTC", "2025-01-01T00:00:00Z", 3, ["2025-01-01T00:15:00Z", "2025-01-01T00:30:00Z", "2025-01-01T00:45:00Z"]],
		// strictly after: a fire time equal to `after` is not returned
		["0 * * * *", "UTC", "2025-01-01T05:00:00Z", 1, ["2025-01-01T06:00:00Z"]],
		["0 * * * *", "UTC", "2025-01-01T04:59:59.999Z", 1, ["2025-01-01T05:00:00Z"]],
		["0 * * * *", "UTC", "2025-01-01T05:00:00.001Z", 1, ["2025-01-01T06:00:00Z"]],
		// seconds field
		["*/20 * * * * *", "UTC", "2025-01-01T00:00:00Z", 4, ["2025-01-01T00:00:20Z", "2025-01-01T00:00:40Z", "2025-01-01T00:01:00Z", "2025-01-01T00:01:20Z"]],
		["30 0 12 * * *", "UTC", "2025-01-01T00:00:00Z", 2, ["2025-01-01T12:00:30Z", "2025-01-02T12:00:30Z"]],
		["15,45 * * * * *", "UTC", "2025-01-01T00:00:20Z", 3, ["2025-01-01T00:00:45Z", "2025-01-01T00:01:15Z", "2025-01-01T00:01:45Z"]],
		// day-of-month OR day-of-week when both restricted (June 2025: Fridays 6, 13, 20, 27; 13th is a Friday)
		["0 0 13 * FRI", "UTC", "2025-06-01T00:00:00Z", 4, ["2025-06-06T00:00:00Z", "2025-06-13T00:00:00Z", "2025-06-20T00:00:00Z", "2025-06-27T00:00:00Z"]],
		// ... July 2025: Fridays 4, 11, 18, 25; the 13th is a Sunday
		["0 0 13 * FRI", "UTC", "2025-07-01T00:00:00Z", 4, ["2025-07-04T00:00:00Z", "2025-07-11T00:00:00Z", "2025-07-13T00:00:00Z", "2025-07-18T00:00:00Z"]],
		["0 0 1,15 * 1", "UTC", "2025-09-01T00:00:00Z", 4, ["2025-09-08T00:00:00Z", "2025-09-15T00:00:00Z", "2025-09-22T00:00:00Z", "2025-09-29T00:00:00Z"]],
		// one of them a wildcard: AND (day-of-week only / day-of-month only)
		["0 0 * * FRI", "UTC", "2025-07-01T00:00:00Z", 2, ["2025-07-04T00:00:00Z", "2025-07-11T00:00:00Z"]],
		["0 0 13 * *", "UTC", "2025-07-01T00:00:00Z", 2, ["2025-07-13T00:00:00Z", "2025-08-13T00:00:00Z"]],
		// */2 day-of-month counts as a wildcard (crontab(5)/Vixie): odd days that are Mondays
		["0 0 */2 * MON", "UTC", "2025-01-01T00:00:00Z", 3, ["2025-01-13T00:00:00Z", "2025-01-27T00:00:00Z", "2025-02-03T00:00:00Z"]],
		// month and day names, case-insensitive
		["0 12 1 jan,Jul *", "UTC", "2025-02-01T00:00:00Z", 2, ["2025-07-01T12:00:00Z", "2026-01-01T12:00:00Z"]],
		["0 9 * * Mon-fri", "UTC", "2025-01-03T10:00:00Z", 3, ["2025-01-06T09:00:00Z", "2025-01-07T09:00:00Z", "2025-01-08T09:00:00Z"]],
		// 7 and 0 are Sunday (2025-01-05 and 2025-01-12 are Sundays)
		["0 0 * * 7", "UTC", "2025-01-01T00:00:00Z", 2, ["2025-01-05T00:00:00Z", "2025-01-12T00:00:00Z"]],
		["0 0 * * 0", "UTC", "2025-01-01T00:00:00Z", 2, ["2025-01-05T00:00:00Z", "2025-01-12T00:00:00Z"]],
		["0 0 * * SUN", "UTC", "2025-01-01T00:00:00Z", 1, ["2025-01-05T00:00:00Z"]],
		["0 0 * * 6-7", "UTC", "2025-01-01T00:00:00Z", 3, ["2025-01-04T00:00:00Z", "2025-01-05T00:00:00Z", "2025-01-11T00:00:00Z"]],
		["0 0 * * SAT-SUN", "UTC", "2025-01-01T00:00:00Z", 3, ["2025-01-04T00:00:00Z", "2025-01-05T00:00:00Z", "2025-01-11T00:00:00Z"]],
		// Feb 29 only in leap years
		["0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", 2, ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]],
		// time zone without DST
		["0 9 * * *", "Asia/Tokyo", "2025-01-01T00:00:00Z", 2, ["2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"]],
		["0 9 * * *", "Asia/Kolkata", "2025-01-01T00:00:00Z", 1, ["2025-01-01T03:30:00Z"]],
		// aliases
		["@yearly", "UTC", "2025-03-01T00:00:00Z", 2, ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]],
		["@annually", "UTC", "2025-03-01T00:00:00Z", 1, ["2026-01-01T00:00:00Z"]],
		["@monthly", "UTC", "2025-03-01T00:00:00Z", 2, ["2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z"]],
		["@weekly", "UTC", "2025-03-01T00:00:00Z", 2, ["2025-03-02T00:00:00Z", "2025-03-09T00:00:00Z"]],
		["@daily", "UTC", "2025-03-01T00:00:00Z", 2, ["2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"]],
		["@midnight", "UTC", "2025-03-01T00:00:00Z", 2, ["2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"]],
		["@hourly", "UTC", "2025-03-01T00:00:00Z", 2, ["2025-03-01T01:00:00Z", "2025-03-01T02:00:00Z"]],
		["@daily", NY, "2025-03-01T00:00:00Z", 2, ["2025-03-01T05:00:00Z", "2025-03-02T05:00:00Z"]],
	])("%j in %s after %s", (expr, tz, after, count, expected) => {
		expect(next(expr, tz, after, count)).toEqual(expected);
	});

	test("every alias is covered and expands to a valid pattern", () => {
		expect(Object.keys(SCHEDULE_ALIASES).sort()).toEqual(["@annually", "@daily", "@hourly", "@midnight", "@monthly", "@weekly", "@yearly"]);
	});

	test("count 0 gives nothing; nextFireTime gives the first", () => {
		expect(nextFireTimes("* * * * *", "UTC", 0, 0)).toEqual([]);
		expect(nextFireTime("0 0 1 1 *", "UTC", ms("2025-06-01T00:00:00Z"))).toBe(ms("2026-01-01T00:00:00Z"));
	});

	test("non-finite after is a programming error", () => {
		expect(() => nextFireTimes("* * * * *", "UTC", Number.NaN, 1)).toThrow(RangeError);
	});

	test("accepts parsed schedules and loaded zones (the hot path)", () => {
		const ps = parseSchedule("*/15 * * * *");
		const zone = loadTimeZone(NY);
		expect(nextFireTimes(ps, zone, ms("2025-01-01T00:00:00Z"), 2)).toEqual(nextFireTimes("*/15 * * * *", NY, ms("2025-01-01T00:00:00Z"), 2));
	});
});

/*
 * DST. New York: 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z); 2025-11-02 02:00 EDT -> 01:00 EST (06:00Z),
 * so 01:00-01:59 local is 05:00Z-05:59Z (EDT) and again 06:00Z-06:59Z (EST).
 * London: 2025-03-30 01:00 GMT -> 02:00 BST (01:00Z); 2025-10-26 02:00 BST -> 01:00 GMT (01:00Z),
 * so 01:00-01:59 local is 00:00Z-00:59Z (BST) and again 01:00Z-01:59Z (GMT).
 */
describe("nextFireTimes: DST (Vixie cron rules)", () => {
	test.each<[string, string, string, string, number, string[]]>([
		// name, expr, tz, after, count, expected
		// (a) spring forward, fixed-time job in the skipped hour: once, at the jump
		["NY spring 02:30 -> 03:00 EDT", "30 2 * * *", NY, "2025-03-08T12:00:00Z", 3, ["2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z", "2025-03-11T06:30:00Z"]],
		["NY spring 02:00 -> 03:00 EDT", "0 2 * * *", NY, "2025-03-08T12:00:00Z", 2, ["2025-03-09T07:00:00Z", "2025-03-10T06:00:00Z"]],
		[
			"NY spring two skipped times collapse",
			"0,30 2 * * *",
			NY,
			"2025-03-08T12:00:00Z",
			3,
			["2025-03-09T07:00:00Z", "2025-03-10T06:00:00Z", "2025-03-10T06:30:00Z"],
		],
		[
			"NY spring skipped + 03:00 collapse",
			"0 2,3 * * *",
			NY,
			"2025-03-08T12:00:00Z",
			3,
			["2025-03-09T07:00:00Z", "2025-03-10T06:00:00Z", "2025-03-10T07:00:00Z"],
		],
		[
			"NY spring range hour is fixed-time",
			"15 1-3 * * *",
			NY,
			"2025-03-09T05:00:00Z",
			4,
			["2025-03-09T06:15:00Z", "2025-03-09T07:00:00Z", "2025-03-09T07:15:00Z", "2025-03-10T05:15:00Z"],
		],
		["NY spring seconds field", "45 30 2 * * *", NY, "2025-03-08T12:00:00Z", 2, ["2025-03-09T07:00:00Z", "2025-03-10T06:30:45Z"]],
		["NY spring after the jump run", "30 2 * * *", NY, "2025-03-09T07:00:00Z", 1, ["2025-03-10T06:30:00Z"]],
		["NY spring job outside the gap", "30 3 * * *", NY, "2025-03-08T12:00:00Z", 2, ["2025-03-09T07:30:00Z", "2025-03-10T07:30:00Z"]],
		[
			"London spring 01:30 -> 02:00 BST",
			"30 1 * * *",
			LON,
			"2025-03-29T12:00:00Z",
			3,
			["2025-03-30T01:00:00Z", "2025-03-31T00:30:00Z", "2025-04-01T00:30:00Z"],
		],
		["London spring 01:00 -> 02:00 BST", "0 1 * * *", LON, "2025-03-29T12:00:00Z", 2, ["2025-03-30T01:00:00Z", "2025-03-31T00:00:00Z"]],
		// (c) spring forward, wildcard jobs: no fires in the skipped hour
		[
			"NY spring */15",
			"*/15 * * * *",
			NY,
			"2025-03-09T06:30:00Z",
			4,
			["2025-03-09T06:45:00Z", "2025-03-09T07:00:00Z", "2025-03-09T07:15:00Z", "2025-03-09T07:30:00Z"],
		],
		["NY spring hourly", "0 * * * *", NY, "2025-03-09T05:30:00Z", 3, ["2025-03-09T06:00:00Z", "2025-03-09T07:00:00Z", "2025-03-09T08:00:00Z"]],
		["NY spring * 2 (minute wildcard) has no fires", "* 2 * * *", NY, "2025-03-09T06:58:00Z", 2, ["2025-03-10T06:00:00Z", "2025-03-10T06:01:00Z"]],
		["London spring */30", "*/30 * * * *", LON, "2025-03-30T00:00:00Z", 3, ["2025-03-30T00:30:00Z", "2025-03-30T01:00:00Z", "2025-03-30T01:30:00Z"]],
		["London spring hourly", "0 * * * *", LON, "2025-03-29T23:30:00Z", 3, ["2025-03-30T00:00:00Z", "2025-03-30T01:00:00Z", "2025-03-30T02:00:00Z"]],
		// (b) fall back, fixed-time job in the repeated hour: once, first pass
		["NY fall 01:30 first pass only", "30 1 * * *", NY, "2025-11-01T12:00:00Z", 3, ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z", "2025-11-04T06:30:00Z"]],
		["NY fall after the first-pass run", "30 1 * * *", NY, "2025-11-02T05:30:00Z", 1, ["2025-11-03T06:30:00Z"]],
		["NY fall from inside the second pass", "30 1 * * *", NY, "2025-11-02T06:10:00Z", 1, ["2025-11-03T06:30:00Z"]],
		["NY fall 01:00 and 02:00", "0 1,2 * * *", NY, "2025-11-02T04:00:00Z", 3, ["2025-11-02T05:00:00Z", "2025-11-02T07:00:00Z", "2025-11-03T06:00:00Z"]],
		["NY fall seconds field", "*/30 30 1 * * *", NY, "2025-11-02T05:00:00Z", 3, ["2025-11-02T05:30:00Z", "2025-11-02T05:30:30Z", "2025-11-03T06:30:00Z"]],
		[
			"London fall 01:30 first pass (BST)",
			"30 1 * * *",
			LON,
			"2025-10-25T12:00:00Z",
			3,
			["2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z", "2025-10-28T01:30:00Z"],
		],
		["London fall 01:00 first pass (BST)", "0 1 * * *", LON, "2025-10-25T12:00:00Z", 2, ["2025-10-26T00:00:00Z", "2025-10-27T01:00:00Z"]],
		// (c) fall back, wildcard jobs: both passes, by elapsed time
		[
			"NY fall */15 both passes",
			"*/15 * * * *",
			NY,
			"2025-11-02T04:50:00Z",
			10,
			[
				"2025-11-02T05:00:00Z",
				"2025-11-02T05:15:00Z",
				"2025-11-02T05:30:00Z",
				"2025-11-02T05:45:00Z",
				"2025-11-02T06:00:00Z",
				"2025-11-02T06:15:00Z",
				"2025-11-02T06:30:00Z",
				"2025-11-02T06:45:00Z",
				"2025-11-02T07:00:00Z",
				"2025-11-02T07:15:00Z",
			],
		],
		["NY fall */15 from late first pass", "*/15 * * * *", NY, "2025-11-02T05:40:00Z", 2, ["2025-11-02T05:45:00Z", "2025-11-02T06:00:00Z"]],
		[
			"NY fall */15 from second pass never goes back",
			"*/15 * * * *",
			NY,
			"2025-11-02T06:00:00Z",
			3,
			["2025-11-02T06:15:00Z", "2025-11-02T06:30:00Z", "2025-11-02T06:45:00Z"],
		],
		[
			"NY fall hourly",
			"0 * * * *",
			NY,
			"2025-11-02T03:30:00Z",
			5,
			["2025-11-02T04:00:00Z", "2025-11-02T05:00:00Z", "2025-11-02T06:00:00Z", "2025-11-02T07:00:00Z", "2025-11-02T08:00:00Z"],
		],
		[
			"NY fall * 1 (minute wildcard) both passes",
			"*/30 1 * * *",
			NY,
			"2025-11-02T04:00:00Z",
			5,
			["2025-11-02T05:00:00Z", "2025-11-02T05:30:00Z", "2025-11-02T06:00:00Z", "2025-11-02T06:30:00Z", "2025-11-03T06:00:00Z"],
		],
		[
			"NY fall seconds wildcard",
			"*/20 * * * * *",
			NY,
			"2025-11-02T05:59:30Z",
			4,
			["2025-11-02T05:59:40Z", "2025-11-02T06:00:00Z", "2025-11-02T06:00:20Z", "2025-11-02T06:00:40Z"],
		],
		[
			"London fall */15 both passes",
			"*/15 * * * *",
			LON,
			"2025-10-26T00:30:00Z",
			8,
			[
				"2025-10-26T00:45:00Z",
				"2025-10-26T01:00:00Z",
				"2025-10-26T01:15:00Z",
				"2025-10-26T01:30:00Z",
				"2025-10-26T01:45:00Z",
				"2025-10-26T02:00:00Z",
				"2025-10-26T02:15:00Z",
				"2025-10-26T02:30:00Z",
			],
		],
		[
			"London fall hourly",
			"0 * * * *",
			LON,
			"2025-10-25T23:30:00Z",
			4,
			["2025-10-26T00:00:00Z", "2025-10-26T01:00:00Z", "2025-10-26T02:00:00Z", "2025-10-26T03:00:00Z"],
		],
	])("%s", (_name, expr, tz, after, count, expected) => {
		expect(next(expr, tz, after, count)).toEqual(expected);
	});

	/* What croner 9.1.0 returns with its own `timezone` option, i.e. why lib/core/schedule.ts corrects it. */
	test.each<[string, string, string, string, number, string[]]>([
		["spring fixed is shifted by the gap (NY)", "30 2 * * *", NY, "2025-03-08T12:00:00Z", 1, ["2025-03-09T07:30:00Z"]],
		["spring fixed is shifted by the gap (London)", "30 1 * * *", LON, "2025-03-29T12:00:00Z", 1, ["2025-03-30T01:30:00Z"]],
		["fall fixed runs in the second pass (London)", "30 1 * * *", LON, "2025-10-25T12:00:00Z", 1, ["2025-10-26T01:30:00Z"]],
		["fall fixed first pass (NY, correct)", "30 1 * * *", NY, "2025-11-01T12:00:00Z", 1, ["2025-11-02T05:30:00Z"]],
		["fall wildcard loses the second pass (NY)", "*/15 * * * *", NY, "2025-11-02T05:40:00Z", 2, ["2025-11-02T05:45:00Z", "2025-11-02T07:00:00Z"]],
		["fall wildcard goes backwards from the second pass (NY)", "*/15 * * * *", NY, "2025-11-02T06:00:00Z", 1, ["2025-11-02T05:15:00Z"]],
		["fall wildcard loses the first pass (London)", "*/15 * * * *", LON, "2025-10-26T00:30:00Z", 1, ["2025-10-26T01:45:00Z"]],
		["spring wildcard skips the gap (NY, correct)", "0 * * * *", NY, "2025-03-09T05:30:00Z", 2, ["2025-03-09T06:00:00Z", "2025-03-09T07:00:00Z"]],
	])("croner 9.1.0 raw: %s", (_name, expr, tz, after, count, expected) => {
		const c = new Cron(expr, { timezone: tz, paused: true });
		expect(isoList(c.nextRuns(count, new Date(ms(after))).map((d) => d.getTime()))).toEqual(expected);
	});
});

describe("fireTimesBetween", () => {
	test.each<[string, string, string, string, string, number, string[]]>([
		// name, expr, tz, after (exclusive), until (inclusive), max, expected
		[
			"bounds: after exclusive, until inclusive",
			"0 * * * *",
			"UTC",
			"2025-01-01T00:00:00Z",
			"2025-01-01T03:00:00Z",
			10,
			["2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z", "2025-01-01T03:00:00Z"],
		],
		["nothing in range", "0 0 * * *", "UTC", "2025-01-01T00:00:00Z", "2025-01-01T23:59:59Z", 10, []],
		["until <= after", "* * * * *", "UTC", "2025-01-01T01:00:00Z", "2025-01-01T01:00:00Z", 10, []],
		[
			"max keeps the latest",
			"0 * * * *",
			"UTC",
			"2025-01-01T00:00:00Z",
			"2025-01-01T10:30:00Z",
			3,
			["2025-01-01T08:00:00Z", "2025-01-01T09:00:00Z", "2025-01-01T10:00:00Z"],
		],
		[
			"latest of a sparse job over years",
			"0 0 1 1 *",
			"UTC",
			"2015-06-01T00:00:00Z",
			"2025-06-01T00:00:00Z",
			2,
			["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"],
		],
		["max 1 = the latest", "*/15 * * * *", "UTC", "2025-01-01T00:00:00Z", "2025-01-08T00:07:00Z", 1, ["2025-01-08T00:00:00Z"]],
		["max 0", "* * * * *", "UTC", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z", 0, []],
		[
			"NY fall wildcard both passes",
			"*/30 * * * *",
			NY,
			"2025-11-02T04:45:00Z",
			"2025-11-02T07:00:00Z",
			100,
			["2025-11-02T05:00:00Z", "2025-11-02T05:30:00Z", "2025-11-02T06:00:00Z", "2025-11-02T06:30:00Z", "2025-11-02T07:00:00Z"],
		],
		[
			"NY fall wildcard, max inside the repeated hour",
			"*/30 * * * *",
			NY,
			"2025-11-02T04:45:00Z",
			"2025-11-02T06:45:00Z",
			3,
			["2025-11-02T05:30:00Z", "2025-11-02T06:00:00Z", "2025-11-02T06:30:00Z"],
		],
		["NY fall fixed once", "30 1 * * *", NY, "2025-11-01T12:00:00Z", "2025-11-03T12:00:00Z", 10, ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"]],
		[
			"NY spring fixed collapsed",
			"0,30 2 * * *",
			NY,
			"2025-03-08T12:00:00Z",
			"2025-03-10T12:00:00Z",
			10,
			["2025-03-09T07:00:00Z", "2025-03-10T06:00:00Z", "2025-03-10T06:30:00Z"],
		],
		[
			"London spring wildcard gap",
			"0 * * * *",
			LON,
			"2025-03-29T23:30:00Z",
			"2025-03-30T02:00:00Z",
			10,
			["2025-03-30T00:00:00Z", "2025-03-30T01:00:00Z", "2025-03-30T02:00:00Z"],
		],
		["London fall fixed first pass", "0 1 * * *", LON, "2025-10-25T12:00:00Z", "2025-10-26T12:00:00Z", 10, ["2025-10-26T00:00:00Z"]],
	])("%s", (_name, expr, tz, after, until, max, expected) => {
		expect(isoList(fireTimesBetween(expr, tz, ms(after), ms(until), max))).toEqual(expected);
	});

	test("a long outage of a per-second job stays cheap and returns the latest max", () => {
		const until = ms("2025-02-01T00:00:00Z");
		const t0 = process.hrtime.bigint();
		const r = fireTimesBetween("* * * * * *", NY, ms("2025-01-01T00:00:00Z"), until, 1000);
		const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
		expect(r).toHaveLength(1000);
		expect(r[999]).toBe(until);
		expect(r[0]).toBe(until - 999_000);
		expect(elapsedMs).toBeLessThan(2000);
	});

	test("agrees with nextFireTimes over a DST week", () => {
		for (const [expr, tz, from] of [
			["*/7 * * * *", NY, "2025-11-01T00:00:00Z"],
			["13 1,2 * * *", NY, "2025-03-07T00:00:00Z"],
			["*/10 * * * *", LON, "2025-10-24T00:00:00Z"],
			["5 1 * * *", LON, "2025-03-28T00:00:00Z"],
		]) {
			const after = ms(from);
			const all = nextFireTimes(expr, tz, after, 2000);
			const until = after + 7 * 86_400_000;
			const inRange = all.filter((t) => t <= until);
			expect(inRange.length).toBeLessThan(all.length);
			expect(fireTimesBetween(expr, tz, after, until, 5000)).toEqual(inRange);
			// strictly ascending, no duplicates
			for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]);
		}
	});
});

describe("validateTimezone", () => {
	test.each<[string, string]>([
		["UTC", "UTC"],
		["utc", "UTC"],
		["Etc/UTC", "Etc/UTC"],
		["America/New_York", "America/New_York"],
		["america/new_york", "America/New_York"],
		["Europe/London", "Europe/London"],
		["Europe/Kyiv", "Europe/Kyiv"],
		["Etc/GMT+5", "Etc/GMT+5"],
		["America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"],
	])("accepts %j", (tz, expected) => {
		expect(validateTimezone(tz)).toBe(expected);
	});

	test.each<[string, unknown]>([
		["empty", ""],
		["blank", "  "],
		["garbage", "not a zone"],
		["unknown", "Mars/Olympus"],
		["offset", "+05:00"],
		["GMT offset without Etc", "GMT+5"],
		["Local", "Local"],
		["path traversal", "../etc/passwd"],
		["too long", "A".repeat(100)],
		["number", 5],
		["null", null],
	])("refuses %s", (_name, tz) => {
		let err: unknown;
		try {
			validateTimezone(tz as string);
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(FieldError);
		expect((err as FieldError).field).toBe("timezone");
	});

	test("nextFireTimes refuses a bad zone as a timezone FieldError", () => {
		expect(() => nextFireTimes("* * * * *", "Nowhere/Special", 0, 1)).toThrow(FieldError);
	});
});

describe("performance", () => {
	test("nextFireTimes with a cached schedule and zone is well under 0.1 ms", () => {
		const cases = [
			[parseSchedule("*/15 * * * *"), loadTimeZone(NY)],
			[parseSchedule("0 3 * * 1-5"), loadTimeZone(LON)],
			[parseSchedule("30 2 * * *"), loadTimeZone("UTC")],
		] as const;
		const base = ms("2025-01-01T00:00:00Z");
		const n = 5000;
		for (const [ps, zone] of cases) {
			nextFireTimes(ps, zone, base, 1);
			const t0 = process.hrtime.bigint();
			for (let i = 0; i < n; i++) nextFireTimes(ps, zone, base + i * 3_700_000, 1);
			const perCallUs = Number(process.hrtime.bigint() - t0) / n / 1000;
			expect(perCallUs).toBeLessThan(100);
		}
	});
});

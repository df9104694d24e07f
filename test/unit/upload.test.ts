import { FieldError, TooLargeError } from "../../lib/core/errors";
import { decodeExecutable, sha256Hex } from "../../lib/core/upload";

const MAX = 1024;

describe("decodeExecutable: accepted", () => {
	const cases: Array<[string, string, Buffer]> = [
		["padded, 1 byte", "QQ==", Buffer.from("A")],
		["padded, 2 bytes", "QUI=", Buffer.from("AB")],
		["no padding needed", "QUJD", Buffer.from("ABC")],
		["unpadded, 1 byte", "QQ", Buffer.from("A")],
		["unpadded, 2 bytes", "QUI", Buffer.from("AB")],
		["script", Buffer.from("#!/bin/sh\necho hi\n").toString("base64"), Buffer.from("#!/bin/sh\necho hi\n")],
		["+ and / alphabet", "+/+/", Buffer.from([0xfb, 0xff, 0xbf])],
		["all byte values", Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString("base64"), Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
		// Whitespace rule: space, tab, CR, LF are ignored anywhere (e.g. `base64` output wrapped at 76 columns).
		["LF-wrapped lines", "QUJD\nREVG\n", Buffer.from("ABCDEF")],
		["CRLF and trailing newline", "QUJD\r\nREVG\r\n", Buffer.from("ABCDEF")],
		["spaces and tabs", " QU JD\tREVG ", Buffer.from("ABCDEF")],
		["whitespace inside the padding", "QQ=\n=", Buffer.from("A")],
		["exactly at the limit", Buffer.alloc(MAX, 7).toString("base64"), Buffer.alloc(MAX, 7)],
	];
	test.each(cases)("%s", (_name, input, expected) => {
		const buf = decodeExecutable(input, MAX);
		expect(buf.equals(expected)).toBe(true);
	});

	test("wrapped output as produced by base64(1)", () => {
		const content = Buffer.from(Array.from({ length: 500 }, (_, i) => (i * 37) % 256));
		const wrapped = content.toString("base64").replace(/.{76}/g, "$&\n") + "\n";
		expect(decodeExecutable(wrapped, MAX).equals(content)).toBe(true);
	});
});

describe("decodeExecutable: refused", () => {
	const cases: Array<[string, string, RegExp]> = [
		["empty", "", /is empty/],
		["whitespace only", " \n\t\r\n", /is empty/],
		["invalid char !", "QUJD!", /invalid character "!"/],
		["base64url -", "-_-_", /invalid character "-"/],
		["base64url _", "QU_D", /invalid character "_"/],
		["non-ASCII", "QUJDé", /invalid character U\+00E9/],
		["NUL byte", "QUJD\0", /invalid character U\+0000/],
		["vertical tab is not tolerated whitespace", "QUJD\vREVG", /invalid character U\+000B/],
		["padding in the middle", "QQ==QUJD", /padding/],
		["single = in the middle", "QUI=QUJD", /padding/],
		["three =", "QQ===", /padding/],
		["= only", "=", /padding/],
		["== only", "==", /padding/],
		["padding after a full group", "QUJD=", /wrong length/],
		["padded but wrong length", "QQQ==", /wrong length|padding/],
		["dangling single character", "QUJDR", /wrong length/],
		["dangling single character, 1 char", "Q", /wrong length/],
		["non-zero trailing bits (1 byte)", "QR==", /non-zero bits/],
		["non-zero trailing bits (2 bytes)", "QUJ=", /non-zero bits/],
		["non-zero trailing bits, unpadded", "QR", /non-zero bits/],
	];
	test.each(cases)("%s", (_name, input, message) => {
		let err: unknown;
		try {
			decodeExecutable(input, MAX);
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(FieldError);
		expect(err).not.toBeInstanceOf(TooLargeError);
		expect((err as FieldError).field).toBe("executable");
		expect((err as FieldError).message).toMatch(message);
	});

	test("Buffer.from would have accepted these (why the validation exists)", () => {
		expect(Buffer.from("QUJD!", "base64").length).toBe(3);
		expect(Buffer.from("QQ==QUJD", "base64").length).toBe(1);
	});
});

describe("decodeExecutable: size limit", () => {
	test.each([
		["one byte over, padded", Buffer.alloc(MAX + 1).toString("base64"), MAX + 1],
		[
			"one byte over, unpadded",
			Buffer.alloc(MAX + 1)
				.toString("base64")
				.replace(/=+$/, ""),
			MAX + 1,
		],
		["far over", "A".repeat(4 * MAX), 3 * MAX],
	])("%s → TooLargeError", (_name, input, size) => {
		let err: unknown;
		try {
			decodeExecutable(input, MAX);
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(TooLargeError);
		expect(err).toBeInstanceOf(FieldError);
		expect((err as TooLargeError).field).toBe("executable");
		expect((err as TooLargeError).limit).toBe(MAX);
		expect((err as TooLargeError).size).toBe(size);
	});

	test("decided from the length, without decoding (and before validating characters)", () => {
		const spy = jest.spyOn(Buffer, "from");
		try {
			expect(() => decodeExecutable("!".repeat(4 * MAX + 4), MAX)).toThrow(TooLargeError);
			expect(spy).not.toHaveBeenCalled();
		} finally {
			spy.mockRestore();
		}
	});

	test("whitespace does not count toward the size", () => {
		const text = Buffer.alloc(MAX).toString("base64").replace(/.{4}/g, "$&\n");
		expect(decodeExecutable(text, MAX).length).toBe(MAX);
	});

	test("maxBytes must be a positive integer", () => {
		expect(() => decodeExecutable("QQ==", 0)).toThrow(RangeError);
		expect(() => decodeExecutable("QQ==", 1.5)).toThrow(RangeError);
	});

	test("a non-string is a FieldError", () => {
		expect(() => decodeExecutable(42 as unknown as string, MAX)).toThrow(FieldError);
	});
});

describe("sha256Hex", () => {
	test.each([
		["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
		["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
	])("%j", (input, hex) => {
		expect(sha256Hex(Buffer.from(input))).toBe(hex);
	});
});

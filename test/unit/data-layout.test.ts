/**
 * The data folder's modes: the pure layout (lib/core/data-layout.ts) and the adapter that applies
 * it on disk (lib/adapters/local/data-dir.ts), on temporary folders.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ensurePrivateFile, restrictIfPresent, secureDataDir, writePrivateFile } from "../../lib/adapters/local/data-dir";
import { ConfigError } from "../../lib/core/errors";
import { dataEntryMode, sqliteFileName, usesDataDir } from "../../lib/core/data-layout";

describe("dataEntryMode", () => {
	it.each([
		["jobs.sqlite", "file", 0o600],
		["jobs.sqlite-wal", "file", 0o600],
		["jobs.sqlite-shm", "file", 0o600],
		["users.sqlite-journal", "file", 0o600],
		["admin-token", "file", 0o600],
		["outbox-worker-1.json", "file", 0o600],
		["outbox-host_1234.json.tmp", "file", 0o600],
		["work", "directory", 0o711],
		["cache", "directory", 0o700],
		["objects", "directory", 0o700],
		// Not ours: left alone.
		["fires.log", "file", null],
		["jobs.sqlite.bak", "file", null],
		["outbox-x.json.old", "file", null],
		["admin-token", "directory", null],
		["cache", "file", null],
		["jobs.sqlite", "directory", null],
		["jobs.sqlite", "other", null],
		["work", "other", null],
		["elsewhere", "directory", null],
	] as const)("%s (%s) -> %p", (name, kind, mode) => {
		expect(dataEntryMode(name, kind)).toBe(mode);
	});

	it("covers the SQLite file of every owner", () => {
		for (const owner of ["jobs", "users"]) expect(dataEntryMode(sqliteFileName(owner), "file")).toBe(0o600);
	});
});

describe("usesDataDir", () => {
	const cases: [string[], boolean, boolean, boolean][] = [
		[["api", "users", "jobs", "manager", "worker"], true, true, true],
		[["worker"], false, false, true],
		[["api", "users", "jobs"], true, false, true],
		[["api", "users", "jobs"], false, true, true],
		[["api", "users", "jobs"], false, false, false],
		[["users"], true, false, true],
		[["users"], false, true, false],
		[["api"], true, true, false],
		[["manager"], true, true, false],
		[[], true, true, false],
	];
	it.each(cases)("%j sqlite=%p localObjects=%p -> %p", (services, sqlite, localObjects, expected) => {
		expect(usesDataDir({ services, sqlite, localObjects })).toBe(expected);
	});
});

describe("the data folder on disk", () => {
	let tmp: string;
	const modeOf = (p: string) => fs.statSync(p).mode & 0o777;

	beforeEach(() => {
		tmp = fs.mkdtempSync(path.join(os.tmpdir(), "data-layout-"));
	});

	afterEach(() => {
		fs.rmSync(tmp, { recursive: true, force: true });
	});

	it("makes a missing data folder 0711, with its parents", () => {
		const dir = path.join(tmp, "a", "data");
		secureDataDir(dir);
		expect(modeOf(dir)).toBe(0o711);
	});

	it("fixes what an older version left, and leaves alone what is not ours", () => {
		const dir = path.join(tmp, "data");
		fs.mkdirSync(dir, { mode: 0o755 });
		fs.chmodSync(dir, 0o755);
		for (const f of ["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "users.sqlite", "admin-token", "outbox-n1.json", "fires.log"]) {
			fs.writeFileSync(path.join(dir, f), "x");
			fs.chmodSync(path.join(dir, f), 0o644);
		}
		for (const d of ["cache", "objects", "work", "mine"]) {
			fs.mkdirSync(path.join(dir, d));
			fs.chmodSync(path.join(dir, d), 0o755);
		}
		// A symbolic link is not followed (chmod would change its target).
		fs.writeFileSync(path.join(tmp, "elsewhere"), "");
		fs.chmodSync(path.join(tmp, "elsewhere"), 0o644);
		fs.symlinkSync(path.join(tmp, "elsewhere"), path.join(dir, "users.sqlite-wal"));
		secureDataDir(dir);
		expect(modeOf(dir)).toBe(0o711);
		for (const f of ["jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "users.sqlite", "admin-token", "outbox-n1.json"])
			expect([f, modeOf(path.join(dir, f))]).toEqual([f, 0o600]);
		expect(modeOf(path.join(dir, "cache"))).toBe(0o700);
		expect(modeOf(path.join(dir, "objects"))).toBe(0o700);
		expect(modeOf(path.join(dir, "work"))).toBe(0o711);
		expect(modeOf(path.join(dir, "fires.log"))).toBe(0o644);
		expect(modeOf(path.join(dir, "mine"))).toBe(0o755);
		expect(modeOf(path.join(tmp, "elsewhere"))).toBe(0o644);
		// Contents are untouched.
		expect(fs.readFileSync(path.join(dir, "jobs.sqlite"), "utf8")).toBe("x");
	});

	it("refuses with a ConfigError naming CRONJOB_DATA_DIR when the folder cannot be made", () => {
		const file = path.join(tmp, "not-a-dir");
		fs.writeFileSync(file, "");
		expect(() => secureDataDir(path.join(file, "data"))).toThrow(ConfigError);
		expect(() => secureDataDir(path.join(file, "data"))).toThrow(/CRONJOB_DATA_DIR|data folder/);
	});

	it("ensurePrivateFile creates an empty 0600 file, or makes an existing one 0600 without truncating it", () => {
		const fresh = path.join(tmp, "fresh.sqlite");
		const old = process.umask(0);
		try {
			ensurePrivateFile(fresh);
		} finally {
			process.umask(old);
		}
		expect(modeOf(fresh)).toBe(0o600);
		expect(fs.statSync(fresh).size).toBe(0);
		const existing = path.join(tmp, "existing.sqlite");
		fs.writeFileSync(existing, "content");
		fs.chmodSync(existing, 0o644);
		ensurePrivateFile(existing);
		expect(modeOf(existing)).toBe(0o600);
		expect(fs.readFileSync(existing, "utf8")).toBe("content");
	});

	it("restrictIfPresent makes a file 0600 and ignores a missing one", () => {
		const f = path.join(tmp, "x-wal");
		restrictIfPresent(f);
		expect(fs.existsSync(f)).toBe(false);
		fs.writeFileSync(f, "");
		fs.chmodSync(f, 0o666);
		restrictIfPresent(f);
		expect(modeOf(f)).toBe(0o600);
	});

	it("writePrivateFile replaces a file of another mode with a 0600 one, leaving no temp file", () => {
		const f = path.join(tmp, "admin-token");
		fs.writeFileSync(f, "old\n");
		fs.chmodSync(f, 0o644);
		writePrivateFile(f, "new\n");
		expect(modeOf(f)).toBe(0o600);
		expect(fs.readFileSync(f, "utf8")).toBe("new\n");
		expect(fs.readdirSync(tmp)).toEqual(["admin-token"]);
	});
});

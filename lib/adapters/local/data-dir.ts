/**
 * The data folder on disk with the modes of lib/core/data-layout.ts, set explicitly (whatever the
 * umask) and fixed at start for an installation an older version made (0755 folders, 0644 SQLite
 * files).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../../core/errors";
import { DATA_DIR_MODE, dataEntryMode, PRIVATE_FILE_MODE } from "../../core/data-layout";

/** A folder with exactly this mode (made with its missing parents when absent). */
export function ensureDirMode(dir: string, mode: number): void {
	fs.mkdirSync(dir, { recursive: true, mode });
	fs.chmodSync(dir, mode);
}

/**
 * The data folder 0711 and the entries of ours in it (database files, admin token, outboxes, cache,
 * objects, work) at their modes. Throws ConfigError when it cannot (e.g. a folder this process does
 * not own): a node does not run on a data folder it cannot keep private.
 */
export function secureDataDir(dataDir: string): void {
	try {
		ensureDirMode(dataDir, DATA_DIR_MODE);
		for (const e of fs.readdirSync(dataDir, { withFileTypes: true })) {
			const mode = dataEntryMode(e.name, e.isDirectory() ? "directory" : e.isFile() ? "file" : "other");
			if (mode !== null) fs.chmodSync(path.join(dataDir, e.name), mode);
		}
	} catch (err) {
		throw new ConfigError("CRONJOB_DATA_DIR", `cannot make the data folder ${dataDir} private: ${(err as Error).message}`);
	}
}

/**
 * A file that exists with mode 0600: created empty when missing (its content is another's business,
 * e.g. SQLite's), chmod'ed when it exists. Opening never truncates.
 */
export function ensurePrivateFile(file: string): void {
	const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, PRIVATE_FILE_MODE);
	try {
		fs.fchmodSync(fd, PRIVATE_FILE_MODE);
	} finally {
		fs.closeSync(fd);
	}
}

/** chmod 0600 when the file exists. */
export function restrictIfPresent(file: string): void {
	try {
		fs.chmodSync(file, PRIVATE_FILE_MODE);
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
	}
}

/**
 * Write a file readable by its owner only: the content goes to a fresh temp file (0600 from its
 * creation) renamed over the target, so the content is never in a file of another mode, even when
 * the target existed with one.
 */
export function writePrivateFile(file: string, content: string): void {
	const tmp = `${file}.${process.pid}.tmp`;
	fs.rmSync(tmp, { force: true });
	// Created by this call ("wx"): the umask can only take bits away from 0600.
	fs.writeFileSync(tmp, content, { mode: PRIVATE_FILE_MODE, flag: "wx" });
	try {
		fs.renameSync(tmp, file);
	} catch (err) {
		fs.rmSync(tmp, { force: true });
		throw err;
	}
}

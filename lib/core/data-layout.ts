/**
 * The data folder's layout and the modes that keep it unreadable by jobs (data at rest). Jobs run as
 * unprivileged users (nobody, or their runAs account) on a worker that is root; nothing a job may
 * reach in the data folder holds another job's command, environment, executable or output.
 *
 *   <data>/                  0711  enter only: a job must traverse it to reach its working folder,
 *                                  and can list nothing
 *     jobs.sqlite(-wal|-shm) 0600  every job's command and env (SQLite gives -wal, -shm and
 *     users.sqlite(...)      0600  -journal the main file's mode, whatever the umask)
 *     admin-token            0600
 *     outbox-<node>.json     0600  results not yet written (outputs)
 *     cache/                 0700  executables by digest (files 0755: a job gets its own one as an
 *                                  open file, never by a path into the cache)
 *     objects/               0700  the embedded object store (subfolders 0700, files 0600)
 *     work/                  0711  run folders: enter only
 *       run-XXXXXX/          0700  owned by the job's user, removed after the run
 *
 * Run folders stay under the data folder, behind 0711 parents: a job's working folder must be
 * reachable by its absolute path for the job's own user (`cd "$PWD"`, realpath, tools that reopen
 * files by absolute path), and a separate root would be one more folder for operators to configure
 * and secure. 0711 gives that path and nothing else: the folders cannot be listed, and everything in
 * them that is not a run folder is private to the worker by its own mode. A job reaches another
 * run's folder only if it runs as the same user (then it is the same principal).
 */

export const DATA_DIR_MODE = 0o711;
export const WORK_ROOT_MODE = 0o711;
/** cache/, objects/ and the object store's subfolders. */
export const PRIVATE_DIR_MODE = 0o700;
/** Database files, the admin token, the outbox, stored objects. */
export const PRIVATE_FILE_MODE = 0o600;
/** Cached executables: runnable by any job user through the open file it is given. */
export const CACHED_EXECUTABLE_MODE = 0o755;

export const WORK_DIR = "work";
export const CACHE_DIR = "cache";
export const OBJECTS_DIR = "objects";
export const ADMIN_TOKEN_FILE = "admin-token";

/** The SQLite file of the service that owns tables (`jobs`, `users`). */
export function sqliteFileName(owner: string): string {
	return `${owner}.sqlite`;
}

/** SQLite's companions of a database file: the write-ahead log, its shared memory, the rollback journal. */
export const SQLITE_COMPANION_SUFFIXES = ["-wal", "-shm", "-journal"] as const;

const PRIVATE_FILE_RE = /^(?:[A-Za-z0-9_.-]+\.sqlite(?:-wal|-shm|-journal)?|admin-token|outbox-[A-Za-z0-9_.-]*\.json(?:\.tmp)?)$/;

/**
 * The mode an entry found directly in the data folder must have, or null for an entry that is not
 * ours (left alone). Used at start to fix the modes an older version left.
 */
export function dataEntryMode(name: string, kind: "file" | "directory" | "other"): number | null {
	if (kind === "directory") {
		if (name === WORK_DIR) return WORK_ROOT_MODE;
		if (name === CACHE_DIR || name === OBJECTS_DIR) return PRIVATE_DIR_MODE;
		return null;
	}
	if (kind === "file" && PRIVATE_FILE_RE.test(name)) return PRIVATE_FILE_MODE;
	return null;
}

/**
 * Whether a node with these services keeps anything in the data folder: the worker (cache, run
 * folders, outbox), the jobs and users services on SQLite, the jobs service on the local object store.
 */
export function usesDataDir(opts: { services: readonly string[]; sqlite: boolean; localObjects: boolean }): boolean {
	const has = (s: string) => opts.services.includes(s);
	return has("worker") || ((has("jobs") || has("users")) && opts.sqlite) || (has("jobs") && opts.localObjects);
}

/**
 * The worker's outbox on disk: results not yet written to the run ledger live in memory and, while
 * there are any, in one JSON file (written atomically, mode 0600), so they survive a restart while the
 * database is down.
 * The file sits in the data folder (0711: jobs cannot list it); its mode keeps the outputs in it from
 * jobs, and the node makes an older one 0600 at start (lib/adapters/local/data-dir.ts).
 */
import * as fs from "node:fs";
import type { FinishRequest, OutboxStore } from "../../engine/worker/ports";

export class OutboxFile implements OutboxStore {
	constructor(
		private readonly file: string,
		private readonly log: (msg: string, err: unknown) => void,
	) {}

	load(): FinishRequest[] {
		try {
			return JSON.parse(fs.readFileSync(this.file, "utf8")) as FinishRequest[];
		} catch {
			return []; // none
		}
	}

	save(pending: readonly FinishRequest[]): void {
		try {
			if (pending.length === 0) fs.rmSync(this.file, { force: true });
			else {
				fs.writeFileSync(this.file + ".tmp", JSON.stringify(pending), { mode: 0o600 });
				fs.renameSync(this.file + ".tmp", this.file);
			}
		} catch (err) {
			this.log("Cannot save the outbox:", err);
		}
	}
}

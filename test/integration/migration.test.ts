/**
 * The upgrade of a jobs table made by an older version: syncModel adds the nullable columns
 * declared since (here `startingDeadline`), on SQLite and on MariaDB, and the old rows read as
 * "not set". Run twice (two processes starting at once meet the same DDL): the second finds it done.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Sequelize } from "sequelize";
import { syncModel } from "../../lib/adapters/sql/db";
import { jobModel } from "../../lib/adapters/sql/models";
import { validateJobCreate } from "../../lib/core/validation";
import { newJobRow } from "../../lib/core/views";
import { freshSequelizeDatabase } from "../support/mariadb";

const { DATABASE_URL } = process.env;

async function upgrade(seq: Sequelize): Promise<void> {
	const def = jobModel(seq.getDialect());
	const model = seq.define(def.name, def.define, def.options);
	await syncModel(model);
	const qi = seq.getQueryInterface();
	// The table as the previous version made it: no startingDeadline column, one job in it.
	await qi.removeColumn(model.getTableName(), "startingDeadline");
	expect(Object.keys(await qi.describeTable(model.getTableName()))).not.toContain("startingDeadline");
	const settings = validateJobCreate({ type: "command", executable: "true", schedule: "* * * * *" }, { admin: false });
	const { startingDeadline: _new, ...old } = newJobRow(settings, { id: "old-job", owner: "u1", digest: null, size: null, createdAt: 1, updatedAt: 1 });
	await model.create(old as never, { fields: Object.keys(old) });
	await syncModel(model);
	await syncModel(model);
	const columns = await qi.describeTable(model.getTableName());
	expect(columns.startingDeadline).toEqual(expect.objectContaining({ allowNull: true }));
	const row = (await model.findByPk("old-job", { raw: true })) as unknown as { startingDeadline: number | null };
	expect(row.startingDeadline).toBeNull();
}

describe("a jobs table of an older version is upgraded in place", () => {
	test("SQLite", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-migrate-"));
		const seq = new Sequelize({ dialect: "sqlite", storage: path.join(dir, "jobs.sqlite"), logging: false });
		try {
			await upgrade(seq);
		} finally {
			await seq.close();
			fs.rmSync(dir, { recursive: true, force: true });
		}
	});

	(DATABASE_URL ? test : test.skip)("MariaDB", async () => {
		const { seq, drop } = await freshSequelizeDatabase(DATABASE_URL as string, "cronjob_test_migrate");
		try {
			await upgrade(seq);
		} finally {
			await drop();
		}
	});
});

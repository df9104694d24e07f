/**
 * The jobs service's tables as Sequelize models: `jobs` from the job schema (lib/core/job-schema.ts),
 * `runs` from RUN_COLUMNS below. The columns are described abstractly (Column); sqlType maps each to
 * the dialect's type.
 */
import { DataTypes, type DataType, type ModelAttributeColumnOptions, type ModelOptions, type ModelStatic, type Model, type Sequelize } from "sequelize";
import { COLUMN_FIELDS, fieldSpec, jobColumns, type Column } from "../../core/job-schema";
import type { RunRow } from "../../core/views";

export type Dialect = ReturnType<Sequelize["getDialect"]>;

/** A model as moleculer-db's sequelize adapter takes it (it calls sequelize.define on connect). */
export interface ModelDefinition {
	name: string;
	define: Record<string, ModelAttributeColumnOptions>;
	options: ModelOptions;
}

export function sqlType(column: Column, dialect: Dialect): DataType {
	switch (column.kind) {
		case "string":
			return DataTypes.STRING(column.length);
		case "text":
			// MySQL's TEXT holds 64 KiB of bytes; SQLite has one TEXT.
			return column.size === "medium" && dialect === "mysql" ? DataTypes.TEXT({ length: "medium" }) : DataTypes.TEXT;
		case "integer":
			return DataTypes.INTEGER;
		case "bigint":
			return DataTypes.BIGINT;
		case "boolean":
			return DataTypes.BOOLEAN;
	}
}

/** Sequelize attributes for abstract columns (a primary key is NOT NULL by itself). */
export function attributes(columns: Record<string, Column>, dialect: Dialect): Record<string, ModelAttributeColumnOptions> {
	const out: Record<string, ModelAttributeColumnOptions> = {};
	for (const [name, c] of Object.entries(columns)) {
		out[name] = c.primaryKey ? { type: sqlType(c, dialect), primaryKey: true } : { type: sqlType(c, dialect), allowNull: !!c.nullable };
	}
	return out;
}

/** The `jobs` model, for moleculer-db's `model` setting. */
export function jobModel(dialect: Dialect): ModelDefinition {
	return {
		name: "job",
		define: attributes(jobColumns(), dialect),
		options: {
			tableName: "jobs",
			timestamps: false,
			indexes: COLUMN_FIELDS.filter((k) => fieldSpec(k).column?.index).map((k) => ({ fields: [k] })),
		},
	};
}

export const RUN_COLUMNS: { [K in keyof RunRow]: Column } = {
	id: { kind: "string", length: 36, primaryKey: true },
	jobId: { kind: "string", length: 36 },
	scheduledAt: { kind: "bigint" },
	attempt: { kind: "integer" },
	trigger: { kind: "string", length: 16 },
	status: { kind: "string", length: 16 },
	startedAt: { kind: "bigint", nullable: true },
	finishedAt: { kind: "bigint", nullable: true },
	exitCode: { kind: "integer", nullable: true },
	signal: { kind: "string", length: 16, nullable: true },
	// The output's tail (CRONJOB_MAX_OUTPUT_BYTES) needs more than 64 KiB on MySQL.
	output: { kind: "text", size: "medium" },
	node: { kind: "string", length: 200, nullable: true },
	error: { kind: "text", nullable: true },
};

/** Define the `runs` model (one run per fire and attempt: the unique key). Sync it with syncModel. */
export function defineRunModel(seq: Sequelize): ModelStatic<Model> {
	return seq.define("run", attributes(RUN_COLUMNS, seq.getDialect()), {
		tableName: "runs",
		timestamps: false,
		indexes: [
			{ name: "runs_fire_unique", unique: true, fields: ["jobId", "scheduledAt", "attempt"] },
			{ name: "runs_status", fields: ["status"] },
		],
	});
}

/** The jobs service's two models. */
export interface JobsModels {
	jobs: ModelStatic<Model>;
	runs: ModelStatic<Model>;
}

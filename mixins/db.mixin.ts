/**
 * DbMixin(opts): a service's own database, through moleculer-db and its sequelize adapter (SQLite
 * file <dataDir>/<owner>.sqlite on the embedded default, MySQL/MariaDB with DATABASE_URL; see
 * lib/adapters/sql/db.ts). It gives the host:
 * - `this.adapter.db` (the Sequelize instance) and `this.adapter.model` (opts.model, synced on
 *   connect, safe when several processes start at once);
 * - `guard(fn)` (DbMixinMethods): runs a database call (one statement or one transaction), turning
 *   connection errors into unavailable("database") (503, retryable) and running it again when the
 *   server refused it for a lock conflict (a deadlock or a lock wait timeout: nothing of it was
 *   written), so that a conflict is never a lost write; with `serializeSqlite`, one call at a time
 *   on SQLite;
 * - none of moleculer-db's generic CRUD actions: the host publishes its own (ownership,
 *   validation), and the tables are not reachable any other way;
 * - SQLite tuning after connecting (WAL) and a checkpoint when the service stops.
 * moleculer-db calls one `afterConnected`: the host passes its own as opts.afterConnected, run
 * after the model is synced.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import DbService from "moleculer-db";
import type { Model, ModelStatic, Sequelize } from "sequelize";
import type { Config } from "../lib/config";
import type { Clock } from "../lib/core/clock";
import { unavailable } from "../lib/core/errors";
import { Limiter } from "../lib/engine/limiter";
import {
	checkpoint,
	createAdapter,
	createSequelize,
	isConnectionError,
	isLockConflict,
	LOCK_CONFLICT_TRIES,
	lockConflictBackoffMs,
	NO_GENERIC_DB_ACTIONS,
	syncModel,
	tuneDatabase,
} from "../lib/adapters/sql/db";
import type { Dialect, ModelDefinition } from "../lib/adapters/sql/models";

/** What the mixin adds to the host's methods. */
export interface DbMixinMethods {
	/**
	 * Run a database call (one statement or one transaction, safe to run again): connection errors
	 * become unavailable("database"), a lock conflict is tried again (LOCK_CONFLICT_TRIES); everything
	 * else passes through. On SQLite, `background` calls (the run ledger's batches) wait behind the
	 * others (the API's): see Limiter.
	 */
	guard<T>(fn: () => Promise<T>, background?: boolean): Promise<T>;
}

/** A service with DbMixin: type the host's `this` with an interface extending this one. */
export interface DbMixinHost extends Service, DbMixinMethods {
	adapter: { db: Sequelize; model: ModelStatic<Model> };
}

export interface DbMixinOptions<H extends DbMixinHost> {
	config: Config;
	/** Who owns the tables: names the SQLite file (<dataDir>/<owner>.sqlite). */
	owner: string;
	/** The service's main model (moleculer-db's `model`), for the dialect in use. */
	model: (dialect: Dialect) => ModelDefinition;
	/**
	 * SQLite: one statement or transaction at a time (through guard). For a service with many
	 * concurrent writers: Sequelize runs each transaction on a connection of its own, and several
	 * writers would wait on each other's lock inside the libuv thread pool and starve it (every
	 * thread busy-waiting on a lock whose holder needs a thread to commit).
	 */
	serializeSqlite: boolean;
	/** The pauses between tries after a lock conflict. */
	clock: Clock;
	/** Runs after connecting, tuning and syncing the model (more tables, seed rows). */
	afterConnected?: (this: H) => Promise<void>;
}

interface MixinThis extends DbMixinHost {
	sqliteLock: Limiter | null;
}

export function DbMixin<H extends DbMixinHost>(opts: DbMixinOptions<H>): Partial<ServiceSchema> {
	const seq = createSequelize(opts.config, opts.owner);
	const serialize = opts.serializeSqlite && seq.getDialect() === "sqlite";
	const mixin: Partial<ServiceSchema<ServiceSettingSchema, MixinThis>> = {
		mixins: [DbService],
		adapter: createAdapter(seq),
		model: opts.model(seq.getDialect()),
		actions: { ...NO_GENERIC_DB_ACTIONS },

		methods: {
			async guard<T>(this: MixinThis, fn: () => Promise<T>, background = false): Promise<T> {
				const release = this.sqliteLock ? await this.sqliteLock.acquire(background) : null;
				try {
					for (let tries = 1; ; tries++) {
						try {
							return await fn();
						} catch (err) {
							if (isConnectionError(err)) throw unavailable("database", err);
							if (!isLockConflict(err) || tries >= LOCK_CONFLICT_TRIES) throw err;
							this.logger.debug(`Lock conflict (${(err as Error).message}); trying again (${tries + 1} of ${LOCK_CONFLICT_TRIES})`);
							await new Promise<void>((r) => opts.clock.setTimeout(r, lockConflictBackoffMs(tries, Math.random)));
						}
					}
				} finally {
					release?.();
				}
			},
		},

		created(this: MixinThis) {
			this.sqliteLock = serialize ? new Limiter(1) : null;
		},

		// Runs before moleculer-db disconnects (stopped handlers run in reverse mixin order).
		async stopped(this: MixinThis) {
			if (this.adapter?.db) await checkpoint(this.adapter.db);
		},

		async afterConnected(this: MixinThis) {
			await tuneDatabase(this.adapter.db);
			await syncModel(this.adapter.model);
			await opts.afterConnected?.call(this as unknown as H);
		},
	};
	// Moleculer types handlers on the base Service; the mixin's `this` has the adapter and the lock.
	return mixin as unknown as Partial<ServiceSchema>;
}

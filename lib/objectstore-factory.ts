/**
 * Chooses the object store: S3 when an S3 endpoint is configured, the local folder otherwise.
 * Only objectStoreConfigFromEnv reads the environment; everything else takes its config as input.
 * `Config` from lib/config.ts (dataDir, s3: S3Config | null) can be passed to createObjectStore as is.
 */
import { LocalObjectStore } from "./objectstore-local";
import { S3ObjectStore, type S3ObjectStoreConfig } from "./objectstore-s3";
import type { ObjectStore } from "./objectstore";

export interface ObjectStoreConfig {
	/** The node's data folder (local objects in `<dataDir>/objects`). */
	dataDir: string;
	/** Present with a non-empty endpoint → S3. */
	s3?: S3ObjectStoreConfig | null;
}

export function createObjectStore(config: ObjectStoreConfig): ObjectStore {
	if (config.s3 && config.s3.endpoint) return new S3ObjectStore(config.s3);
	return new LocalObjectStore({ dataDir: config.dataDir });
}

/**
 * Same variables as lib/config.ts: S3_ENDPOINT, S3_BUCKET (default "cronjob"), AWS_REGION (default
 * "us-east-1"), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, CRONJOB_DATA_DIR (default `defaultDataDir`).
 * `s3` is set only when S3_ENDPOINT is non-empty.
 */
export function objectStoreConfigFromEnv(env: NodeJS.ProcessEnv, defaultDataDir = "./data"): ObjectStoreConfig {
	const get = (name: string) => {
		const v = env[name]?.trim();
		return v ? v : undefined;
	};
	const dataDir = get("CRONJOB_DATA_DIR") ?? defaultDataDir;
	const endpoint = get("S3_ENDPOINT");
	if (!endpoint) return { dataDir, s3: null };
	return {
		dataDir,
		s3: {
			endpoint,
			bucket: get("S3_BUCKET") ?? "cronjob",
			region: get("AWS_REGION") ?? "us-east-1",
			accessKeyId: get("AWS_ACCESS_KEY_ID") ?? "",
			secretAccessKey: get("AWS_SECRET_ACCESS_KEY") ?? "",
		},
	};
}

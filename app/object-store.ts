/**
 * Chooses the object store: S3 when an S3 endpoint is configured, the local folder otherwise.
 * `Config` from lib/config.ts (dataDir, s3: S3Config | null) can be passed to createObjectStore as is.
 */
import type { ObjectStore } from "../lib/adapters/object-store";
import { LocalObjectStore } from "../lib/adapters/local/object-store";
import { S3ObjectStore, type S3ObjectStoreConfig } from "../lib/adapters/s3/object-store";

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

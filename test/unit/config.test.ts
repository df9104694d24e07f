import { loadConfig, parseCorsOrigins, parseServices } from "../../lib/config";

describe("parseServices", () => {
	it.each([
		[undefined, ["api", "users", "jobs", "manager", "worker"]],
		["api,jobs", ["api", "users", "jobs"]],
		["worker", ["worker"]],
		[" manager , worker ", ["manager", "worker"]],
		["none", []],
	])("%j -> %j", (raw, expected) => {
		expect(parseServices(raw ?? null)).toEqual(expected);
	});

	it("refuses an unknown service", () => {
		expect(() => parseServices("api,cron")).toThrow(/unknown service "cron"/);
	});
});

describe("loadConfig", () => {
	it("defaults to the embedded single node", () => {
		const c = loadConfig({}, "/srv");
		expect(c).toMatchObject({
			port: 30000,
			dataDir: "/srv/data",
			databaseUrl: null,
			zookeeper: null,
			transporter: null,
			s3: null,
			defaultRunUser: "nobody",
			maxUploadBytes: 16 * 1024 * 1024,
			clockSkewBoundMs: 1000,
		});
	});

	it("reads the cluster settings", () => {
		const c = loadConfig(
			{
				DATABASE_URL: "mysql://u:p@db:3306/c",
				ZOOKEEPER: "zk:2181/x",
				TRANSPORTER: "nats://n:4222",
				S3_ENDPOINT: "http://s3:9000",
				AWS_ACCESS_KEY_ID: "k",
				AWS_SECRET_ACCESS_KEY: "s",
				PORT: "8080",
				CRONJOB_RUNNERS: "0",
			},
			"/srv",
		);
		expect(c).toMatchObject({
			port: 8080,
			databaseUrl: "mysql://u:p@db:3306/c",
			zookeeper: "zk:2181/x",
			transporter: "nats://n:4222",
			runners: 0,
			s3: { endpoint: "http://s3:9000", bucket: "cronjob", region: "us-east-1", accessKeyId: "k", secretAccessKey: "s" },
		});
	});

	it("refuses a number that is not one", () => {
		expect(() => loadConfig({ PORT: "eighty" })).toThrow(/PORT must be a number/);
	});
});

describe("CRONJOB_CORS_ORIGINS", () => {
	it("is off (no origin) unless set", () => {
		expect(loadConfig({}).corsOrigins).toEqual([]);
		expect(loadConfig({ CRONJOB_CORS_ORIGINS: " " }).corsOrigins).toEqual([]);
	});

	it("reads a comma-separated list of origins, wildcards and *", () => {
		expect(parseCorsOrigins("https://app.example.com, http://localhost:8080,https://*.example.org")).toEqual([
			"https://app.example.com",
			"http://localhost:8080",
			"https://*.example.org",
		]);
		expect(loadConfig({ CRONJOB_CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
		expect(parseCorsOrigins("http://[::1]:8080")).toEqual(["http://[::1]:8080"]);
	});

	it.each(["app.example.com", "https://app.example.com/", "https://a.example.com/path", "ftp://x", "https://a b"])("refuses %j", (raw) => {
		expect(() => parseCorsOrigins(raw)).toThrow(/CRONJOB_CORS_ORIGINS: .* is not an origin/);
	});
});

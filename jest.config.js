/** @type {import('jest').Config} */
module.exports = {
	preset: "ts-jest",
	testEnvironment: "node",
	roots: ["<rootDir>/test"],
	testMatch: ["**/*.test.ts"],
	transform: { "^.+\\.ts$": ["ts-jest", {}] },
	testTimeout: 60000,
	globalSetup: "<rootDir>/test/support/global-setup.js",
};

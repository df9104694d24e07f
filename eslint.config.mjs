// ESLint flat config: typescript-eslint's type-aware rules over every TypeScript file; formatting is
// Prettier's (eslint-config-prettier turns off the rules that would fight it).
import js from "@eslint/js";
import prettier from "eslint-config-prettier";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", "data/", "coverage/"] },
	js.configs.recommended,
	{
		files: ["**/*.ts"],
		extends: [...tseslint.configs.recommendedTypeChecked],
		languageOptions: {
			globals: { ...globals.node },
			parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
		},
		rules: {
			"@typescript-eslint/no-floating-promises": "error",
			"@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
			"@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
			// Our interfaces return promises; an implementation that needs no await stays `async` so that
			// whatever it throws reaches the caller as a rejection, as the interface promises.
			"@typescript-eslint/require-await": "off",
		},
	},
	{
		files: ["test/**/*.ts", "bench/**/*.ts"],
		rules: {
			"@typescript-eslint/no-explicit-any": "off",
			"@typescript-eslint/no-unsafe-assignment": "off",
			"@typescript-eslint/no-unsafe-member-access": "off",
			"@typescript-eslint/no-unsafe-call": "off",
			"@typescript-eslint/no-unsafe-argument": "off",
			"@typescript-eslint/no-unsafe-return": "off",
			"@typescript-eslint/no-non-null-assertion": "off",
		},
	},
	{ files: ["**/*.js", "**/*.mjs"], languageOptions: { globals: { ...globals.node, ...globals.jest } } },
	prettier,
);

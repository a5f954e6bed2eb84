// Types of scripts/schema-types.mjs for TypeScript callers (test/unit/schemas.test.ts).
export interface SchemaEntry {
  name: string;
  schemaFile: string;
  typesFile: string;
}
export function listSchemas(root: string): SchemaEntry[];
export function generateTypes(schemaFile: string): Promise<string>;

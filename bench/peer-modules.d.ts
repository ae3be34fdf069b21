// The little of pg-cursor and parquetjs-lite that peer (b) of the bench uses; neither ships types.

declare module 'pg-cursor' {
  import type { Submittable } from 'pg';
  export default class Cursor implements Submittable {
    constructor(text: string, values?: unknown[]);
    submit: Submittable['submit'];
    /** The next `rows` rows; fewer (or none) at the end. */
    read(rows: number): Promise<Record<string, unknown>[]>;
    close(): Promise<void>;
  }
}

declare module 'parquetjs-lite' {
  export interface FieldDefinition {
    type: string;
    optional?: boolean;
    compression?: string;
  }
  export class ParquetSchema {
    constructor(fields: Record<string, FieldDefinition>);
  }
  export class ParquetWriter {
    static openFile(
      schema: ParquetSchema,
      path: string,
      options?: Record<string, unknown>,
    ): Promise<ParquetWriter>;
    appendRow(row: Record<string, unknown>): Promise<void>;
    close(): Promise<void>;
  }
  /** The CommonJS module object, which is what an ESM import of it gets. */
  const parquet: { ParquetSchema: typeof ParquetSchema; ParquetWriter: typeof ParquetWriter };
  export default parquet;
}

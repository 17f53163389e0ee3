import { Type, type Static } from 'typebox';
import { METER_ID_PATTERN } from './reading.js';

export const CUSTOMER_CLASSES = ['residential', 'commercial', 'industrial', 'critical'] as const;
export type CustomerClass = (typeof CUSTOMER_CLASSES)[number];
export const INTERVAL_MINUTES = [15, 30, 60] as const;

/** One row of the customer registry (customers CSV, `meterflow customers import`, POST /api/v1/customers). */
export const CustomerRecord = Type.Object({
  meterId: Type.String({ pattern: METER_ID_PATTERN }),
  customerId: Type.String({ minLength: 1, maxLength: 128 }),
  class: Type.Enum(CUSTOMER_CLASSES),
  tariff: Type.String({ minLength: 1, maxLength: 64 }),
  contractKw: Type.Number({ minimum: 0 }),
  feederId: Type.String({ minLength: 1, maxLength: 64 }),
  transformerId: Type.String({ minLength: 1, maxLength: 64 }),
  hasPv: Type.Boolean(),
  intervalMinutes: Type.Enum(INTERVAL_MINUTES),
});
export type CustomerRecord = Static<typeof CustomerRecord>;
export const CUSTOMER_CSV_HEADER = ['meterId', 'customerId', 'class', 'tariff', 'contractKw', 'feederId', 'transformerId', 'hasPv', 'intervalMinutes'] as const;

/** One row of the transformer registry (`meterflow transformers import`). */
export const TransformerRecord = Type.Object({
  transformerId: Type.String({ minLength: 1, maxLength: 64 }),
  feederId: Type.String({ minLength: 1, maxLength: 64 }),
  ratingKva: Type.Number({ exclusiveMinimum: 0 }),
});
export type TransformerRecord = Static<typeof TransformerRecord>;
export const TRANSFORMER_CSV_HEADER = ['transformerId', 'feederId', 'ratingKva'] as const;

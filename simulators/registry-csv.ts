import { recordsToCsv } from '../src/shared/csv.js';
import { CUSTOMER_CSV_HEADER, TRANSFORMER_CSV_HEADER, type TransformerRecord } from '../src/contracts/registry.js';
import type { FleetCustomer } from './fleet.js';

/**
 * The registry CSVs `meterflow customers import` / `transformers import` read (the contract's headers and writer,
 * so the round trip goes through the importer's own parser).
 */
export const customersCsv = (rows: readonly FleetCustomer[]): string => recordsToCsv(CUSTOMER_CSV_HEADER, rows);
export const transformersCsv = (rows: readonly TransformerRecord[]): string => recordsToCsv(TRANSFORMER_CSV_HEADER, rows);

export * from "./client";
export * from "./hooks";
export type * from "./types";

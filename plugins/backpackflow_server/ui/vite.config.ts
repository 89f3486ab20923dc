/// <reference types="vitest/config" />
// The bundle is built into ../static, which the server plugin serves and the wheel ships, so
// Python users never need Node. Hashed file names let the server cache assets for good; the
// build is deterministic (tox env `ui` rebuilds it and fails if the committed one differs).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // one stable chunk split: the app, and the heavy editor libraries loaded only on /workflows/:id
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
});

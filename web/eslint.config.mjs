import nextVitals from "eslint-config-next/core-web-vitals";
import nextTs from "eslint-config-next/typescript";

const config = [
  ...nextVitals,
  ...nextTs,
  {
    rules: {
      // The pages of a static export load their data in effects (there is no server to
      // render it); resetting "loading"/"error" at the start of a load is intended.
      "react-hooks/set-state-in-effect": "off",
    },
  },
  {
    ignores: ["node_modules/**", ".next/**", "out/**", "next-env.d.ts", "scripts/**/*.cjs"],
  },
];

export default config;

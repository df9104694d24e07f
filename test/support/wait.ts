export { waitFor } from "../../lib/wait";

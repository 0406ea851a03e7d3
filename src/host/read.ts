/**
 * Best-effort reads for fact gathering and status: a file that cannot be read
 * (missing, a directory, no permission) is an answer, not an error.
 */
import { readFile, stat } from "node:fs/promises";

/** The file's text, or undefined when it cannot be read. */
export async function readTextIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

/** Whether `p` exists (links followed: a dangling link does not). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

import { constants as fsConstants } from "node:fs";
import { copyFile, open, rename, unlink, type FileHandle } from "node:fs/promises";

/** Reads exactly `length` bytes at `position` (zeros past the end of the file). */
export async function readFully(file: FileHandle, position: number, length: number, into?: Buffer): Promise<Buffer> {
  const buf = into ?? Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      buf.fill(0, done, length);
      break;
    }
    done += bytesRead;
  }
  return buf;
}

/** Writes all of `data` at `position`. */
export async function writeFully(file: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

const COPY_BLOCK = 1024 * 1024;

/**
 * Copies a raw image keeping it sparse: a reflink where the filesystem offers one, otherwise block
 * by block, leaving all-zero blocks as holes. Written under a temporary name, fsynced, renamed.
 */
export async function copySparse(src: string, dst: string): Promise<void> {
  const tmp = `${dst}.tmp-${process.pid}`;
  try {
    await copyFile(src, tmp, fsConstants.COPYFILE_FICLONE_FORCE);
    const file = await open(tmp, "r+");
    await file.datasync().finally(() => file.close());
    await rename(tmp, dst);
    return;
  } catch {
    await unlink(tmp).catch(() => undefined);
  }
  const from = await open(src, "r");
  const to = await open(tmp, fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_WRONLY, 0o644);
  try {
    const { size } = await from.stat();
    await to.truncate(size);
    const buf = Buffer.alloc(COPY_BLOCK);
    const zero = Buffer.alloc(COPY_BLOCK);
    for (let offset = 0; offset < size; offset += COPY_BLOCK) {
      const length = Math.min(COPY_BLOCK, size - offset);
      await readFully(from, offset, length, buf);
      const chunk = buf.subarray(0, length);
      if (!chunk.equals(zero.subarray(0, length))) await writeFully(to, chunk, offset);
    }
    await to.datasync();
  } catch (err) {
    await to.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    await from.close();
  }
  await to.close();
  await rename(tmp, dst);
}

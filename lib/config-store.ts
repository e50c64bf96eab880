import type { KV } from "@nats-io/kv";
import {
  ConfigKeys,
  HypervisorRecord,
  JobRecord,
  ProxyRecord,
  RepositoryRecord,
  decode,
  encode,
  type BodyIn,
  type MessageDef,
  type Msg,
} from "../protocol/mod.js";

/** Typed access to the configuration database (KV `ferry-config`). */
export class ConfigStore {
  constructor(private readonly kv: KV) {}

  private async getRecord<M extends MessageDef>(def: M, key: string): Promise<Msg<M> | undefined> {
    const entry = await this.kv.get(key);
    if (!entry || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    return decode(def, entry.value);
  }

  private async listRecords<M extends MessageDef>(def: M, filter: string): Promise<Msg<M>[]> {
    const out: Msg<M>[] = [];
    for await (const key of await this.kv.keys(filter)) {
      const record = await this.getRecord(def, key);
      if (record) out.push(record);
    }
    return out;
  }

  getJob(jobId: string) {
    return this.getRecord(JobRecord, ConfigKeys.job(jobId));
  }
  listJobs() {
    return this.listRecords(JobRecord, ConfigKeys.prefix.job);
  }
  async putJob(record: BodyIn<typeof JobRecord>): Promise<void> {
    const validated = JobRecord.schema.parse({ ...record, v: 1, type: JobRecord.type });
    await this.kv.put(ConfigKeys.job(validated.job.id), encode(JobRecord, validated));
  }
  async deleteJob(jobId: string): Promise<void> {
    await this.kv.delete(ConfigKeys.job(jobId));
  }

  getProxy(proxyId: string) {
    return this.getRecord(ProxyRecord, ConfigKeys.proxy(proxyId));
  }
  listProxies() {
    return this.listRecords(ProxyRecord, ConfigKeys.prefix.proxy);
  }
  async putProxy(record: BodyIn<typeof ProxyRecord>): Promise<void> {
    await this.kv.put(ConfigKeys.proxy(record.id), encode(ProxyRecord, record));
  }

  getRepository(repositoryId: string) {
    return this.getRecord(RepositoryRecord, ConfigKeys.repository(repositoryId));
  }
  listRepositories() {
    return this.listRecords(RepositoryRecord, ConfigKeys.prefix.repository);
  }
  async putRepository(record: BodyIn<typeof RepositoryRecord>): Promise<void> {
    await this.kv.put(ConfigKeys.repository(record.id), encode(RepositoryRecord, record));
  }

  getHypervisor(hypervisorId: string) {
    return this.getRecord(HypervisorRecord, ConfigKeys.hypervisor(hypervisorId));
  }
  listHypervisors() {
    return this.listRecords(HypervisorRecord, ConfigKeys.prefix.hypervisor);
  }
  async putHypervisor(record: BodyIn<typeof HypervisorRecord>): Promise<void> {
    await this.kv.put(ConfigKeys.hypervisor(record.id), encode(HypervisorRecord, record));
  }
}

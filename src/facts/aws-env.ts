/**
 * AWS SDK environment settings as the SDKs read them, shared by the IMDS and
 * EC2 clients. Pure: takes the value, never reads process.env itself.
 */

/** A boolean setting such as AWS_EC2_METADATA_DISABLED: true only for `true`, in any case, spaces ignored. */
export function awsFlag(v: string | undefined): boolean {
  return v !== undefined && v.trim().toLowerCase() === "true";
}

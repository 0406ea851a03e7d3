/**
 * `/etc/eks/image-credential-provider/config.json`: the kubelet's
 * CredentialProviderConfig for the ECR credential provider.
 * Facts from nodeadm/internal/kubelet/image-credential-provider.go; the key
 * order and 2-space indent reproduce nodeadm's serializer output byte for byte.
 */

import { versionAtLeast } from "../util/version.ts";
import { ECR_CREDENTIAL_PROVIDER_BIN } from "../util/node-layout.ts";

const CREDENTIAL_PROVIDER_THRESHOLDS = {
  /** < 1.27: v1alpha1 config and provider API. (image-credential-provider.go before commit 41298160) */
  v1Api: "1.27.0",
  /** >= 1.32: also match `ecr-public.aws.com`. (image-credential-provider.go) */
  ecrPublicAwsCom: "1.32.0",
} as const;

const ECR_MATCH_IMAGES = [
  "*.dkr.ecr.*.amazonaws.com",
  "*.dkr-ecr.*.on.aws",
  "*.dkr.ecr.*.amazonaws.com.cn",
  "*.dkr-ecr.*.on.amazonwebservices.com.cn",
  "*.dkr.ecr-fips.*.amazonaws.com",
  "*.dkr-ecr-fips.*.on.aws",
  "*.dkr.ecr.*.c2s.ic.gov",
  "*.dkr.ecr.*.sc2s.sgov.gov",
  "*.dkr.ecr.*.cloud.adc-e.uk",
  "*.dkr.ecr.*.csp.hci.ic.gov",
  "*.dkr.ecr.*.amazonaws.eu",
  "public.ecr.aws",
] as const;

/** The ECR image patterns the provider is asked about on this kubelet version. */
function ecrMatchImages(kubeletVersion: string): string[] {
  const list: string[] = [...ECR_MATCH_IMAGES];
  // Only ecr-credential-provider 1.32+ can answer for this registry; asking older ones just adds latency.
  if (versionAtLeast(kubeletVersion, CREDENTIAL_PROVIDER_THRESHOLDS.ecrPublicAwsCom)) list.push("ecr-public.aws.com");
  return list;
}

/** `providerBinPath`'s basename is the provider name the kubelet execs from `--image-credential-provider-bin-dir`. */
export function credentialProviderConfigJson(kubeletVersion: string, providerBinPath: string = ECR_CREDENTIAL_PROVIDER_BIN): string {
  const v1 = versionAtLeast(kubeletVersion, CREDENTIAL_PROVIDER_THRESHOLDS.v1Api);
  const name = providerBinPath.slice(providerBinPath.lastIndexOf("/") + 1);
  const doc = {
    apiVersion: v1 ? "kubelet.config.k8s.io/v1" : "kubelet.config.k8s.io/v1alpha1",
    kind: "CredentialProviderConfig",
    providers: [
      {
        name,
        matchImages: ecrMatchImages(kubeletVersion),
        defaultCacheDuration: "12h0m0s",
        apiVersion: v1 ? "credentialprovider.kubelet.k8s.io/v1" : "credentialprovider.kubelet.k8s.io/v1alpha1",
      },
    ],
  };
  return JSON.stringify(doc, null, 2);
}

export function credentialProviderBinDir(providerBinPath: string = ECR_CREDENTIAL_PROVIDER_BIN): string {
  return providerBinPath.slice(0, providerBinPath.lastIndexOf("/")) || "/";
}

"""An environment's landscape: the one place its AWS resources' names are spelled.

Names carry the project as well as the environment (webapp-stage-web-sg, webapp-stage-webserver):
security-group names are unique per VPC and IAM names per account, so two projects forked from
this skeleton can share one account without taking each other's groups or roles. The next AWS
areas (load balancer, Auto Scaling group, log group, alarm topic, secrets) name their resources
here too.
"""

import dataclasses

from www.project import Environment, Project


@dataclasses.dataclass(frozen=True)
class Landscape:
    """The names of one environment's AWS resources."""

    project: Project
    env: Environment

    @classmethod
    def of(cls, project, env_name):
        return cls(project, project.environment(env_name))

    @property
    def prefix(self):
        return f"{self.project.name}-{self.env.name}"

    @property
    def bucket(self):
        return self.env.bucket

    @property
    def web_group(self):
        return f"{self.prefix}-web-sg"

    @property
    def backend_group(self):
        return f"{self.prefix}-backend-sg"

    @property
    def load_balancer_group(self):
        return f"{self.prefix}-lb-sg"

    @property
    def load_balancer(self):
        return self.prefix  # ALB and target group names: 32 characters at most

    @property
    def target_group(self):
        return f"{self.prefix}-web"

    @property
    def launch_template(self):
        return f"{self.prefix}-webserver"

    @property
    def auto_scaling_group(self):
        return f"{self.prefix}-web"

    @property
    def role(self):
        return f"{self.prefix}-webserver"

    @property
    def instance_profile(self):
        return self.role

    @property
    def database(self):
        return self.prefix

    @property
    def database_name(self):
        """The Postgres database inside the RDS instance: the project, as an identifier."""
        return self.project.name.replace("-", "_")

    @property
    def secrets_path(self):
        """The SSM Parameter Store path of the environment's secrets (www/config_secrets.py)."""
        return f"/{self.project.name}/{self.env.name}"

    def secret_parameter(self, name):
        """The SecureString a config's secret(name) reads."""
        return f"{self.secrets_path}/{name}"

    @property
    def secrets_key_alias(self):
        """The KMS key the secrets are encrypted with: SSM's AWS-managed key."""
        return "alias/aws/ssm"

    @property
    def database_password_parameter(self):
        return self.secret_parameter("database-password")

    @property
    def static_distribution(self):
        """The Comment that identifies the CloudFront distribution serving static/ and media/
        (a distribution has no name of its own), and the name of its origin access control."""
        return f"{self.prefix}-static"

    @property
    def release_repository(self):
        return self.project.image("release")

    @property
    def web_instance(self):
        """The Name tag of the environment's web servers."""
        return f"{self.prefix}-web"

    @property
    def log_group(self):
        """CloudWatch Logs group of every container and boot log of the environment."""
        return f"/{self.project.name}/{self.env.name}"

    def log_stream(self, instance_id, source):
        """One stream per instance and source: a container's name, or "boot" for stages 1-2."""
        return f"{instance_id}/{source}"

    @property
    def alert_topic(self):
        """The SNS topic every alarm of the environment notifies."""
        return f"{self.prefix}-alerts"

    def alarm(self, name):
        """A CloudWatch alarm of the environment, e.g. webapp-stage-alb-5xx."""
        return f"{self.prefix}-{name}"

    @property
    def alarm_prefix(self):
        return f"{self.prefix}-"

    def database_snapshot(self, label):
        """A manual or final snapshot of the environment's database."""
        return f"{self.database}-{label}"

    @property
    def tags(self):
        return [
            {"Key": "Project", "Value": self.project.name},
            {"Key": "Env", "Value": self.env.name},
        ]

"""profile_list examples as KubeSpawner's and zero-to-jupyterhub's documentation and tests write them.

Transcribed as data (YAML turned into Python) so the tests can check that a
KubeSpawner admin's configuration works unchanged with AcaSpawner.
"""

from __future__ import annotations

# KubeSpawner, KubeSpawner.profile_list help ("List example")
KUBESPAWNER_LIST = [
    {
        "display_name": "Demo - profile_list entry 1",
        "description": "Demo description for profile_list entry 1, and it should look good even though it is a bit "
                       "lengthy.",
        "slug": "demo-1",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {
                        "display_name": "jupyter/base-notebook:latest",
                        "kubespawner_override": {"image": "jupyter/base-notebook:latest"},
                    },
                    "minimal": {
                        "display_name": "jupyter/minimal-notebook:latest",
                        "default": True,
                        "kubespawner_override": {"image": "jupyter/minimal-notebook:latest"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "display_name_in_choices": "Enter image manually",
                    "validation_regex": "^jupyter/.+:.+$",
                    "validation_message": "Must be an image matching ^jupyter/<name>:<tag>$",
                    "kubespawner_override": {"image": "{value}"},
                },
            },
        },
        "kubespawner_override": {"default_url": "/lab"},
    },
    {
        "display_name": "Demo - profile_list entry 2",
        "slug": "demo-2",
        "kubespawner_override": {"extra_resource_guarantees": {"nvidia.com/gpu": "1"}},
    },
]

# KubeSpawner, KubeSpawner.profile_list help ("Dict example"): keys are slugs
KUBESPAWNER_DICT = {
    "demo-1": {
        "display_name": "Demo - profile_list entry 1",
        "description": "Demo description for profile_list entry 1, and it should look good even though it is a bit "
                       "lengthy.",
        "slug": "demo-1",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {
                        "display_name": "jupyter/base-notebook:latest",
                        "kubespawner_override": {"image": "jupyter/base-notebook:latest"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "display_name_in_choices": "Enter image manually",
                    "validation_regex": "^jupyter/.+:.+$",
                    "validation_message": "Must be an image matching ^jupyter/<name>:<tag>$",
                    "kubespawner_override": {"image": "{value}"},
                },
            },
        },
        "kubespawner_override": {"default_url": "/lab"},
    },
    "demo-2": {
        "display_name": "Demo - profile_list entry 2",
        "slug": "demo-2",
        "kubespawner_override": {"extra_resource_guarantees": {"nvidia.com/gpu": "1"}},
    },
}

# KubeSpawner's tests (tests/test_spawner.py, _test_profiles_dict), sizes and environment included
KUBESPAWNER_TESTS = [
    {
        "display_name": "Training Env - Python",
        "slug": "training-python",
        "default": True,
        "kubespawner_override": {
            "image": "training/python:label",
            "cpu_limit": 1,
            "mem_limit": 512 * 1024 * 1024,
            "environment": {"override": "override-value"},
        },
    },
    {
        "display_name": "Training Env - Datascience",
        "slug": "training-datascience",
        "kubespawner_override": {"image": "training/datascience:label", "cpu_limit": 4, "mem_limit": 8 * 1024**3},
    },
    {
        "display_name": "Training Env - R",
        "slug": "training-r",
        "kubespawner_override": {
            "image": "training/r:label",
            "cpu_limit": 1,
            "mem_limit": 512 * 1024 * 1024,
            "environment": {"override": "override-value", "to-remove": None},
        },
    },
    {
        "display_name": "Test choices",
        "slug": "test-choices",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Image Location",
                    "validation_regex": "^pangeo/.*$",
                    "validation_message": "Must be a pangeo image, matching ^pangeo/.*$",
                    "kubespawner_override": {"image": "{value}"},
                },
                "choices": {
                    "pytorch": {
                        "display_name": "Python 3 Training Notebook",
                        "kubespawner_override": {"image": "pangeo/pytorch-notebook:master"},
                    },
                    "tf": {
                        "display_name": "R 4.2 Training Notebook",
                        "default": True,
                        "kubespawner_override": {"image": "training/r:label"},
                    },
                },
            },
        },
    },
    {
        "display_name": "Test choices no regex",
        "slug": "no-regex",
        "profile_options": {
            "image": {
                "display_name": "Image",
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Image Location",
                    "kubespawner_override": {"image": "{value}"},
                },
                "choices": {
                    "pytorch": {
                        "display_name": "Python 3 Training Notebook",
                        "kubespawner_override": {"image": "pangeo/pytorch-notebook:master"},
                    },
                    "tf": {
                        "display_name": "R 4.2 Training Notebook",
                        "default": True,
                        "kubespawner_override": {"image": "training/r:label"},
                    },
                },
            },
        },
    },
]

# zero-to-jupyterhub, docs/source/jupyterhub/customizing/user-environment.md ("four profiles"),
# with singleuser.image = jupyter/minimal-notebook:2343e33dec46 as the default image
Z2JH_DEFAULT_IMAGE = "jupyter/minimal-notebook:2343e33dec46"
Z2JH_FOUR_PROFILES = [
    {
        "display_name": "Minimal environment",
        "description": "To avoid too much bells and whistles: Python.",
        "default": True,
    },
    {
        "display_name": "Datascience environment",
        "description": "If you want the additional bells and whistles: Python, R, and Julia.",
        "kubespawner_override": {"image": "jupyter/datascience-notebook:2343e33dec46"},
    },
    {
        "display_name": "Spark environment",
        "description": "The Jupyter Stacks spark image!",
        "kubespawner_override": {"image": "jupyter/all-spark-notebook:2343e33dec46"},
    },
    {
        "display_name": "Learning Data Science",
        "description": "Datascience Environment with Sample Notebooks",
        "kubespawner_override": {
            "image": "jupyter/datascience-notebook:2343e33dec46",
            "lifecycle_hooks": {
                "postStart": {
                    "exec": {
                        "command": ["sh", "-c", "gitpuller https://github.com/data-8/materials-fa17 master materials-fa;"]
                    }
                }
            },
        },
    },
]

# zero-to-jupyterhub, user-environment.md (the shape of one profile)
Z2JH_ONE_PROFILE = [
    {
        "display_name": "Name to be displayed to users",
        "description": "Longer description for users.",
        "kubespawner_override": {"your_config": "Your value"},
        "default": True,
    },
]

# zero-to-jupyterhub, docs/source/jupyterhub/customizing/user-resources.md ("GPU Server")
Z2JH_GPU = [
    {
        "display_name": "GPU Server",
        "description": "Spawns a notebook server with access to a GPU",
        "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}},
    },
]

ALL = {
    "kubespawner-list": KUBESPAWNER_LIST,
    "kubespawner-dict": KUBESPAWNER_DICT,
    "kubespawner-tests": KUBESPAWNER_TESTS,
    "z2jh-four-profiles": Z2JH_FOUR_PROFILES,
    "z2jh-one-profile": Z2JH_ONE_PROFILE,
    "z2jh-gpu": Z2JH_GPU,
}

"""What runs the evolution: one worker's loop (worker), N of them locally or on Slurm
(launch, slurm), the paper's scale with a stand-in trainer (simulate), and speed (bench)."""
